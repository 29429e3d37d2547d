"""A local emulator of the AI Music API (producer family), for demos, development and tests.

It answers like the provider (same paths, bodies, status codes and signed callbacks) and can
misbehave on request, so the relay's failure handling can be exercised without spending credits.
Markers in `sound` or `lyrics` (exact strings, combinable):

- `#fail` — the task ends FAILED and its credits are refunded;
- `#nocallback` — no callback is sent (polling still works);
- `#dup` — the final callback arrives 3 times: twice with one `X-Webhook-Id`, once with a new one;
- `#slowcallback` — the final callback waits an extra `slow_callback_s`;
- `#badsig` — callbacks are signed with the wrong secret;
- `#streaming` — halfway through, a `streaming` callback under the `song.completed` header.

`GET /sandbox/tasks` lists every task with its markers and callback attempts.
"""

from __future__ import annotations

from receiver.sandbox.app import create_sandbox_app, serve
from receiver.sandbox.options import SandboxOptions

__all__ = ["SandboxOptions", "create_sandbox_app", "serve"]
