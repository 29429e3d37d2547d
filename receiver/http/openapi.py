"""The OpenAPI 3.1 document of every HTTP route the relay serves, at `GET /api/openapi.json`.

Written out rather than derived from the routes (Starlette has no schema layer and we add
no framework for one); tests/http/test_openapi.py keeps it honest: the document validates, names
exactly the routes the app mounts, and schemathesis finds no server error against it.
Request bodies come from the pydantic models (`SubmitRequest`, `CallbackBody`) and the rows
from the store's row models (`receiver.rows`), so neither can drift from what the code accepts
or answers; the enums of states, kinds and families come from `receiver.states`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from receiver import __version__
from receiver.http.openapi_schemas import BODY_SCHEMAS
from receiver.http.params import MAX_LIMIT, MAX_OFFSET
from receiver.models import CallbackBody, Credits
from receiver.rows import ROW_MODELS
from receiver.states import DELIVERY_STATES, EVENT_KINDS, FAMILIES, TASK_STATES, EventKind
from receiver.submit import SubmitRequest

__all__ = ["openapi_document", "query_parameters"]

Schema = dict[str, Any]

_TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f]*$"
_SAFE_TEXT: Schema = {"type": "string", "maxLength": 256, "pattern": _TEXT_PATTERN}
_ADMIN: list[Schema] = [{"bearer": []}]


def openapi_document() -> Schema:
    """The whole document; built on each call (cheap) so nothing module-level is mutable."""
    schemas: dict[str, Schema] = {**BODY_SCHEMAS}
    for row in ROW_MODELS:
        _model(row, schemas, mode="serialization")
    submit_body = _model(SubmitRequest, schemas)
    callback_body = _model(CallbackBody, schemas)
    credits = _model(Credits, schemas, mode="serialization")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aimusic-relay",
            "version": __version__,
            "description": "Submit AI Music API tasks, receive their signed callbacks "
            "durably, and inspect or replay deliveries. `/api/*` needs "
            "`Authorization: Bearer <RELAY_ADMIN_TOKEN>` (401 without it, and for every "
            "route while the token is unset; 429 after 10 wrong tokens a minute); lists are "
            "JSON arrays, and `X-Next-Offset` / "
            '`Link: rel="next"` say where the next page starts. Every `/api` refusal is '
            '`{"error", "detail"}` JSON: 400 for a query parameter an operation does not list '
            "or a handler name that is not configured, 404 `not_found` for a path that is no "
            "route, 405 `method_not_allowed` (with `Allow`) for a method it does not serve.",
        },
        "paths": {
            "/api/tasks": {
                "get": _list("listTasks", "Tasks, newest first.", "Task", _task_filters()),
                "post": _admin_op(
                    "createTask",
                    "Submit a task upstream; answered once the provider accepted (or the "
                    "outcome is unknown: state `unknown`, never re-sent).",
                    {"202": _json("The stored task.", _ref("Task"))},
                    [400, 402, 403, 408, 410, 413, 429, 502],
                    body=submit_body,
                ),
            },
            "/api/tasks/{task_id}": {
                "get": _admin_op(
                    "getTask",
                    "One task (relay id or provider id) with its inbound payloads, events, "
                    "deliveries and every attempt.",
                    {"200": _json("The task.", _ref("TaskDetail"))},
                    [400, 404],
                    params=[_path("task_id")],
                )
            },
            "/api/events": {
                "get": _list("listEvents", "Events, newest first.", "Event", _event_filters())
            },
            "/api/deliveries": {
                "get": _list(
                    "listDeliveries",
                    "Deliveries, most recently updated first.",
                    "Delivery",
                    [
                        _query("state", {"type": "string", "enum": list(DELIVERY_STATES)}),
                        _query("handler", _SAFE_TEXT, "A handler's configured name."),
                    ],
                )
            },
            "/api/deliveries/replay-dead": {
                "post": _admin_op(
                    "replayDead",
                    "Queue every dead letter again (optionally one handler's, or since a time).",
                    {"202": _json("Queued.", _ref("Replayed"))},
                    [400],
                    params=[
                        _query("handler", _SAFE_TEXT, "Only this handler's dead letters."),
                        _query("since", {"type": "number"}, "Dead since these unix seconds."),
                    ],
                )
            },
            "/api/deliveries/{delivery_id}/replay": {
                "post": _admin_op(
                    "replayDelivery",
                    "Run one finished (succeeded or dead) delivery again.",
                    {"202": _json("Queued.", _ref("Replayed"))},
                    [400, 404, 409],
                    params=[_path("delivery_id")],
                )
            },
            "/api/events/{event_id}/replay": {
                "post": _admin_op(
                    "replayEvent",
                    "Run every finished delivery of one event again.",
                    {"202": _json("Queued.", _ref("Replayed"))},
                    [400, 404],
                    params=[_path("event_id")],
                )
            },
            "/api/credits": {
                "get": _admin_op(
                    "getCredits",
                    "The AI Music API account's balance (extra credits are spent first).",
                    {"200": _json("The balance.", credits)},
                    [402, 403, 429, 502],
                )
            },
            "/api/openapi.json": {
                "get": _public_op(
                    "openapi",
                    "This document (no token needed).",
                    {
                        "200": _json("OpenAPI 3.1.", {"type": "object"}),
                        **_errors([400]),
                    },
                )
            },
            "/webhooks/aimusic": {"post": _webhook(callback_body, token=False)},
            "/webhooks/aimusic/{token}": {"post": _webhook(callback_body, token=True)},
            "/healthz": {
                "get": _public_op("healthz", "Liveness.", {"200": _json("Alive.", _ref("Health"))})
            },
            "/readyz": {
                "get": _public_op(
                    "readyz",
                    "Readiness: the store answers and its schema is current.",
                    {
                        "200": _json("Ready.", _ref("Ready")),
                        "503": _json("Store down or migrations pending.", _ref("Ready")),
                    },
                )
            },
            "/metrics": {
                "get": _public_op(
                    "metrics",
                    "Prometheus text exposition. Unauthenticated by convention: it holds "
                    "counts, handler names and status codes, never config, URLs or secrets.",
                    {
                        "200": {
                            "description": "Metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                )
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "RELAY_ADMIN_TOKEN",
                }
            },
        },
    }


def query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """(path, method) → the query parameters the document gives that operation. The API
    refuses any other with a 400, so what is documented and what is accepted are one list."""
    return {
        (path, method): frozenset(
            p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"
        )
        for path, operations in openapi_document()["paths"].items()
        for method, operation in operations.items()
    }


def _model(
    model: type[BaseModel], schemas: dict[str, Schema], mode: JsonSchemaMode = "validation"
) -> Schema:
    """A model's JSON Schema, registered as a component; nested models become components too
    (pydantic's `#/$defs/...` refs would otherwise point at the document's root). Rows are
    described as the API sends them: `mode="serialization"` (times as date-time strings)."""
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}", mode=mode, schema_generator=_Components
    )
    schemas.update(schema.pop("$defs", {}))
    name = _component(model.__name__)
    schemas[name] = schema
    return _ref(name)


def _component(name: str) -> str:
    """A model's component name: `TaskRow` is documented as `Task`, as it always was."""
    return name.removesuffix("Row")


class _Components(GenerateJsonSchema):
    """Names nested models' components as `_component` names the top-level ones."""

    def normalize_name(self, name: str) -> str:
        return _component(super().normalize_name(name))


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: Schema, headers: Schema | None = None) -> Schema:
    answer: Schema = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _errors(statuses: list[int]) -> Schema:
    return {str(s): _json("Refused; see `error` and `detail`.", _ref("Error")) for s in statuses}


def _public_op(operation_id: str, summary: str, responses: Schema) -> Schema:
    return {"operationId": operation_id, "summary": summary, "responses": responses}


def _admin_op(
    operation_id: str,
    summary: str,
    responses: Schema,
    errors: list[int],
    *,
    params: list[Schema] | None = None,
    body: Schema | None = None,
) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "security": _ADMIN,
        # 400 everywhere: any operation refuses a query parameter it does not document.
        "responses": {**responses, **_errors(sorted({*errors, 400, 401, 429, 503}))},
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _list(operation_id: str, summary: str, row: str, filters: list[Schema]) -> Schema:
    paging = [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}),
        _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}),
    ]
    page_headers = {
        "X-Next-Offset": {
            "description": "The next page's offset; absent on the last page.",
            "schema": {"type": "integer"},
        },
        "Link": {"description": 'The next page\'s URL, rel="next".', "schema": {"type": "string"}},
    }
    page = _json("One page.", {"type": "array", "items": _ref(row)}, page_headers)
    return _admin_op(operation_id, summary, {"200": page}, [400], params=[*paging, *filters])


def _query(name: str, schema: Schema, description: str | None = None) -> Schema:
    parameter: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _SAFE_TEXT}


def _task_filters() -> list[Schema]:
    label = {
        "type": "array",
        "items": {"type": "string", "maxLength": 321, "pattern": "^[A-Za-z0-9_.\\-]{1,64}:"},
    }
    return [
        _query("state", {"type": "string", "enum": list(TASK_STATES)}),
        _query("family", {"type": "string", "enum": list(FAMILIES)}),
        {
            **_query("label", label, "key:value; repeat to require several labels."),
            "style": "form",
            "explode": True,
        },
    ]


def _event_filters() -> list[Schema]:
    return [
        _query("kind", {"type": "string", "enum": list(EVENT_KINDS)}),
        _query("task", _SAFE_TEXT, "The provider's task id or the relay's."),
    ]


def _webhook(body: Schema, *, token: bool) -> Schema:
    def header(name: str, schema: Schema, description: str, required: bool = True) -> Schema:
        return {
            "name": name,
            "in": "header",
            "required": required,
            "schema": schema,
            "description": description,
        }

    params = [
        header(
            "X-Webhook-Signature",
            {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
            "sha256=HMAC-SHA256(secret, `<X-Webhook-Timestamp>.<raw body>`) in hex.",
        ),
        header(
            "X-Webhook-Timestamp",
            {"type": "string", "pattern": "^[0-9]{1,12}$"},
            "Unix seconds; refused beyond ±300 s of our clock.",
        ),
        header(
            "X-Webhook-Id",
            _SAFE_TEXT,
            "The event id (unsigned): a duplicate on the same route and task answers 200.",
            False,
        ),
        header(
            "X-Webhook-Event",
            {"type": "string", "enum": [EventKind.COMPLETED, EventKind.FAILED]},
            "What happened (unsigned): used only when the signed body names no state.",
            False,
        ),
    ]
    if token:
        params.insert(0, {**_path("token"), "description": "The signed per-task token."})
    secret = "the task's own secret" if token else "AIMUSIC_WEBHOOK_SECRET"
    return {
        "operationId": "callbackForTask" if token else "callback",
        "summary": f"A provider callback signed with {secret}; 200 only once stored.",
        "parameters": params,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": _json("Stored, or a duplicate.", _ref("CallbackAnswer")),
            "400": _json("Not the provider's callback JSON.", _ref("Error")),
            "401": _json("Signature, timestamp or token wrong, or no secret.", _ref("Error")),
            "403": _json("Shared route naming a task this relay submitted.", _ref("Error")),
            "409": _json("Names an upstream task id another task has.", _ref("Error")),
            "413": _json(
                "Body over RELAY_MAX_BODY_BYTES, or clips over RELAY_MAX_CLIPS_PER_CALLBACK.",
                _ref("Error"),
            ),
            "408": _json("Body not all sent within RELAY_BODY_TIMEOUT_S.", _ref("Error")),
            "415": _json("Not Content-Type: application/json.", _ref("Error")),
            "503": _json("Store unavailable; retry (Retry-After).", _ref("Error")),
        },
    }
