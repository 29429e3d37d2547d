"""`POST /webhooks/aimusic[/{token}]`: verify, store in one transaction, answer, wake.

Order matters: cheap refusals first (size, type), then the signature on the exact raw bytes,
and only then parsing. Nothing is stored before the signature holds; 200 is sent only after
the commit, so a 200 means durable.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.errors import SignatureError, StoreUnavailable
from receiver.http.callback_json import EVENT_HEADER_CHARS, check_lengths, parse_json
from receiver.http.responses import BodyTimeout, BodyTooLarge, error, first_line, read_body
from receiver.logging import get_logger
from receiver.models import CallbackBody, header_contradicts, normalise
from receiver.services import Services
from receiver.signing import replay_key, verify_callback, webhook_key
from receiver.states import Family, Source
from receiver.store import Inbound

__all__ = ["routes"]

log = get_logger("aimusic_relay.webhooks")

_PLATFORM_ALIASES: dict[str, str] = {"suno": Family.SONIC, **{f.value: f for f in Family}}
"""A callback's `platform` (any case) → its family; suno is sonic's engine."""


async def receive(request: Request) -> Response:
    """Answer one callback and count the answer (its `status` or error code) in the metrics."""
    started = time.perf_counter()
    outcome = "error"
    try:
        response = await _receive(request)
        outcome = _outcome(response)
        return response
    except BodyTimeout:
        outcome = "timeout"  # answered 408 by the app's exception handler
        raise
    finally:
        services: Services = request.app.state.services
        services.metrics.callback(outcome, time.perf_counter() - started)


async def _receive(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    token = request.path_params.get("token")

    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        return error(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        task_ref = services.tokens.loads(token) if token is not None else None
        secrets = services.tokens.task_secrets(task_ref) if task_ref else settings.webhook_secrets
    except SignatureError as exc:
        return _rejected(exc)
    if not secrets:
        return error(401, "no_secret", "this route needs AIMUSIC_WEBHOOK_SECRET to be set")
    try:
        body = await read_body(
            request, settings.relay_max_body_bytes, settings.relay_body_timeout_s
        )
    except BodyTooLarge:
        return error(413, "too_large", f"body over {settings.relay_max_body_bytes} bytes")
    try:
        verify_callback(secrets, request.headers, body, now=time.time())
    except SignatureError as exc:
        return _rejected(exc)

    header_event = request.headers.get("x-webhook-event")
    webhook_id = request.headers.get("x-webhook-id") or request.headers.get("idempotency-key")
    try:
        raw = parse_json(body)
        too_many = _too_many_clips(raw, settings.relay_max_clips_per_callback)
        if too_many is not None:
            return too_many
        parsed = CallbackBody.model_validate(raw)
        platform, clips = _platform(parsed), normalise(parsed, header_event)
        for _kind, clip_id, _fields in clips:
            check_lengths(clip_id=clip_id)
        check_lengths(task_id=parsed.task_id, platform=platform, webhook_id=webhook_id)
    except (ValueError, ValidationError) as exc:
        return error(400, "bad_payload", f"not the provider's callback JSON: {first_line(exc)}")
    if parsed.task_id is None and task_ref is None:
        return error(400, "bad_payload", "the callback names no task_id")
    if header_contradicts(parsed, header_event):
        services.metrics.ignored_event_headers.inc()

    route = f"task:{task_ref}" if task_ref is not None else "shared"
    inbound = Inbound(
        source=Source.CALLBACK,
        body=body,
        platform=platform,
        clips=clips,
        task_id=parsed.task_id,
        task_ref=task_ref,
        webhook_id=webhook_id,
        event_header=_event_header(header_event),
        message=parsed.message,
        replay_key=replay_key(route, request.headers["x-webhook-timestamp"], body),
        webhook_key=webhook_key(route, parsed.task_id, webhook_id),
    )
    try:
        result = await services.store.record_inbound(inbound, services.handlers.route)
    except Exception as exc:
        # Whatever the database did (gone, read-only, schema dropped or never migrated), the
        # sender is told to retry later: nothing was stored, so nothing is lost by waiting.
        if isinstance(exc, StoreUnavailable):
            log.warning("callback refused: store unavailable", error=str(exc))
        else:
            log.exception("callback refused: store error", error=type(exc).__name__)
        return error(
            503,
            "store_unavailable",
            "storage is unavailable; retry later",
            headers={"Retry-After": "5"},
        )
    if result.refused is not None:
        refusal = result.refused
        log.warning("callback refused", reason=refusal.error, task_id=parsed.task_id)
        return error(refusal.status, refusal.error, refusal.detail)
    outcome = "duplicate" if result.duplicate else "accepted"
    log.info(
        "callback " + outcome,
        task_id=parsed.task_id,
        task_ref=result.task_ref,
        webhook_id=inbound.webhook_id,
        webhook_event=header_event,
        events=len(result.event_ids),
        deliveries=result.deliveries,
    )
    return JSONResponse({"status": outcome, "events": list(result.event_ids)})


def _too_many_clips(raw: Any, limit: int) -> Response | None:
    """Counted before validation: ten thousand clips cost seconds to turn into events."""
    clips = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(clips, list) and len(clips) > limit:
        return error(
            413,
            "too_many_clips",
            f"the callback carries {len(clips)} clips; at most {limit} are accepted"
            " (RELAY_MAX_CLIPS_PER_CALLBACK)",
        )
    return None


def _outcome(response: Response) -> str:
    """`accepted`/`duplicate`, or the refusal's error code: read back from our own small JSON
    answer, so every refusal (present or future) is counted without touching each return."""
    try:
        answer = json.loads(bytes(response.body))
    except ValueError:
        return "error"
    if not isinstance(answer, dict):
        return "error"
    return str(answer.get("status") or answer.get("error") or "error")


def _rejected(exc: SignatureError) -> Response:
    log.warning("callback rejected", reason=exc.reason)
    return error(401, exc.reason, exc.detail)


def _platform(body: CallbackBody) -> str:
    if body.platform:
        return _PLATFORM_ALIASES.get(body.platform.lower(), body.platform.lower())
    for clip in body.data:
        fields: dict[str, Any] = clip.model_dump()
        model = str(fields.get("mv") or "")
        if model.startswith(("sonic", "chirp")):
            return Family.SONIC
        if "sound" in (clip.model_extra or {}) or clip.sound is not None:
            return Family.PRODUCER
    return "unknown"


def _event_header(value: str | None) -> str | None:
    """The X-Webhook-Event header as stored: informational, so cut to its column's size."""
    return value[:EVENT_HEADER_CHARS] if value is not None else None


routes = [
    Route("/webhooks/aimusic", receive, methods=["POST"]),
    Route("/webhooks/aimusic/{token}", receive, methods=["POST"]),
]
