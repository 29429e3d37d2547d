"""A local emulator of the AI Music API (producer, sonic, lyrics, credits), for demos and tests.

It answers like the provider (same paths, bodies, status codes and signed callbacks) and can
misbehave on request, so the relay's failure handling can be exercised without spending credits.
Markers anywhere in the prompt — producer `sound` or `lyrics`; sonic `prompt`,
`gpt_description_prompt`, `tags` or `title`; lyrics-create `prompt` — exact strings, combinable:

- `#fail` — the task ends FAILED (sonic: both clips `failed`) and its credits are refunded;
- `#nocallback` — no callback is sent (polling still works);
- `#dup` — the final callback arrives 3 times: twice with one `X-Webhook-Id`, once with a new one;
- `#slowcallback` — the final callback waits an extra `slow_callback_s`;
- `#badsig` — callbacks are signed with the wrong secret;
- `#streaming` — halfway through, a `streaming` callback under the `song.completed` header;
- `#never` (`SandboxOptions.never_finish_marker`) — the task stays RUNNING forever and sends no
  final callback (for timeout tests);
- `#copyright` in the lyrics of a create (producer `lyrics`, sonic `prompt`) — refused with
  403 `lyrics rejected: copyright`, nothing charged.

`SandboxOptions(subscription_active=False)` refuses every paid call with 403 `no active
subscription`. Costs: producer create 10, sonic 15 (`concat_music` 2), lyrics 1; failed tasks
are refunded. `GET /sandbox/tasks` lists every task with its markers and callback attempts;
`GET /sandbox/requests` lists every API request received (method, path, status).
"""

from __future__ import annotations

from receiver.sandbox.app import create_sandbox_app, serve
from receiver.sandbox.options import SandboxOptions

__all__ = ["SandboxOptions", "create_sandbox_app", "serve"]
