"""JSON Schemas of the small bodies the HTTP API answers with, for `receiver.http.openapi`.

These few bodies are built inline by their routes, so they are described here by hand; rows
and request bodies are pydantic models whose schemas the document generates. Every object
allows extra properties: a new field is not a breaking change for clients.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BODY_SCHEMAS"]

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_TEXT: Schema = {"type": ["string", "null"]}
_INT: Schema = {"type": "integer"}


def _object(description: str, properties: Schema, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": True,
    }


BODY_SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        "Every refusal: a short machine-readable code and a human sentence (never a secret).",
        {"error": _STRING, "detail": _STRING},
    ),
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
