"""JSON Schemas of the rows and small bodies the HTTP API answers with, for `receiver.http.openapi`.

The rows are SQL rows passed through `present()` (times as ISO 8601), not pydantic models, so
they are described here by hand; request bodies come from the pydantic models themselves.
Every object allows extra properties: a new column is not a breaking change for clients.
"""

from __future__ import annotations

from typing import Any, get_args

from receiver.models import FAMILIES, EventKind

__all__ = ["ROW_SCHEMAS"]

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_TEXT: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_MAYBE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(description: str, properties: Schema, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": True,
    }


_TASK: Schema = {
    "id": {**_STRING, "description": "The relay's own id (also in callback tokens)."},
    "upstream_id": {**_TEXT, "description": "The provider's task id, once known."},
    "family": {"type": "string", "enum": list(FAMILIES)},
    "platform": _STRING,
    "state": {
        "type": "string",
        "description": "submitting, submitted, running, streaming, succeeded, failed, "
        "timed_out or unknown (the create call's outcome could not be known).",
    },
    "origin": {"type": "string", "enum": ["relay", "external"]},
    "prompt": _TEXT,
    "params": _ANY_OBJECT,
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "handlers": {"type": ["array", "null"], "items": _STRING},
    "error": _TEXT,
    "created_at": _TIME,
    "updated_at": _TIME,
    "next_poll_at": _MAYBE_TIME,
    "poll_attempts": _INT,
    "deadline_at": _MAYBE_TIME,
}

_EVENT: Schema = {
    "id": _STRING,
    "inbox_id": _TEXT,
    "dedupe_key": _STRING,
    "task_id": {**_STRING, "description": "The provider's task id."},
    "task_ref": {**_TEXT, "description": "The relay's task id."},
    "clip_id": _STRING,
    "kind": {"type": "string", "enum": list(get_args(EventKind))},
    "platform": _STRING,
    "source": {"type": "string", "description": "callback, poll or relay"},
    "clip": _ANY_OBJECT,
    "error": _TEXT,
    "received_at": _TIME,
}

_DELIVERY: Schema = {
    "id": _STRING,
    "event_id": _STRING,
    "handler": {**_STRING, "description": "The handler's configured name."},
    "state": {"type": "string", "enum": ["pending", "running", "succeeded", "dead"]},
    "attempts": _INT,
    "next_attempt_at": _TIME,
    "lease_owner": _TEXT,
    "lease_until": {"type": ["number", "null"], "description": "Unix seconds."},
    "last_error": _TEXT,
    "blame": _TEXT,
    "result": {"type": ["object", "null"], "additionalProperties": True},
    "created_at": _TIME,
    "updated_at": _TIME,
    "stage": _INT,
}

_ATTEMPT: Schema = {
    "id": _INT,
    "delivery_id": _STRING,
    "number": _INT,
    "started_at": _TIME,
    "finished_at": _MAYBE_TIME,
    "outcome": {"type": "string", "enum": ["running", "succeeded", "failed"]},
    "error": _TEXT,
    "blame": _TEXT,
}

_INBOX: Schema = {
    "id": _STRING,
    "webhook_id": _TEXT,
    "source": _STRING,
    "event_header": _TEXT,
    "received_at": _TIME,
}

ROW_SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        "Every refusal: a short machine-readable code and a human sentence (never a secret).",
        {"error": _STRING, "detail": _STRING},
    ),
    "Task": _object("A task row.", _TASK),
    "Event": _object("Something that happened to one clip of a task.", _EVENT),
    "Delivery": _object("One (event, handler) pair in the outbox.", _DELIVERY),
    "Attempt": _object("One run of a delivery.", _ATTEMPT),
    "DeliveryDetail": {
        "allOf": [
            _ref("Delivery"),
            {
                "type": "object",
                "properties": {"attempt_log": {"type": "array", "items": _ref("Attempt")}},
            },
        ]
    },
    "EventDetail": {
        "allOf": [
            _ref("Event"),
            {
                "type": "object",
                "properties": {"deliveries": {"type": "array", "items": _ref("DeliveryDetail")}},
            },
        ]
    },
    "TaskDetail": {
        "allOf": [
            _ref("Task"),
            {
                "type": "object",
                "required": ["events", "inbox"],
                "properties": {
                    "events": {"type": "array", "items": _ref("EventDetail")},
                    "inbox": {"type": "array", "items": _object("A raw inbound.", _INBOX)},
                },
            },
        ]
    },
    "Replayed": _object("How many deliveries were queued again.", {"replayed": _INT}),
    "CallbackAnswer": _object(
        "The callback is stored (or was already): the provider may stop retrying.",
        {
            "status": {"type": "string", "enum": ["accepted", "duplicate"]},
            "events": {"type": "array", "items": _STRING},
        },
    ),
    "Health": _object("The process answers.", {"status": {"const": "ok"}}),
    "Ready": _object(
        "The store answers and its schema is at the code's revision.",
        {"status": _STRING, "schema": _TEXT, "detail": _STRING},
        required=["status"],
    ),
}
"""Component schemas by name, referenced as `#/components/schemas/<name>`."""
