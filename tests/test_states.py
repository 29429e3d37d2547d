"""Every state, kind and family is named once (`receiver.states`), and everything that lists
them — the API's filters, the OpenAPI document, the stored rows — lists exactly that."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from receiver.http.openapi import openapi_document
from receiver.http.responses import present
from receiver.rows import TaskDetail
from receiver.states import (
    AttemptOutcome,
    DeliveryState,
    EventKind,
    Family,
    Source,
    TaskOrigin,
    TaskState,
)
from tests.conftest import Relay

STORED = {
    TaskState: [
        "submitting",
        "submitted",
        "running",
        "streaming",
        "succeeded",
        "failed",
        "timed_out",
        "unknown",
    ],
    DeliveryState: ["pending", "running", "succeeded", "dead"],
    AttemptOutcome: ["running", "succeeded", "failed", "lost"],
    EventKind: [
        "task.submitted",
        "song.streaming",
        "song.completed",
        "song.failed",
        "task.timed_out",
        "delivery.dead",
    ],
    Family: ["producer", "sonic", "nuro"],
    TaskOrigin: ["relay", "external"],
    Source: ["callback", "poll", "relay"],
}
"""What databases already hold and clients already read: renaming a value breaks both."""


@pytest.mark.parametrize("enum", list(STORED), ids=lambda e: e.__name__)
def test_stored_values_never_change(enum: type[Any]) -> None:
    """Each enum's values are exactly the strings stored and sent so far, in that order."""
    assert STORED[enum] == [member.value for member in enum]


def _query_enum(document: dict[str, Any], path: str, name: str) -> list[str]:
    [parameter] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    return list(parameter["schema"]["enum"])


def test_openapi_filters_list_exactly_the_enums() -> None:
    """`state`, `family` and `kind` filters document every member and nothing else."""
    document = json.loads(json.dumps(openapi_document()))  # as served
    assert STORED[TaskState] == _query_enum(document, "/api/tasks", "state")
    assert STORED[Family] == _query_enum(document, "/api/tasks", "family")
    assert STORED[EventKind] == _query_enum(document, "/api/events", "kind")
    assert STORED[DeliveryState] == _query_enum(document, "/api/deliveries", "state")


def test_openapi_row_schemas_come_from_the_row_models() -> None:
    """A row's `state` is the enum's component, its times are date-time strings, and the task
    detail nests events, deliveries and attempts by reference."""
    schemas = json.loads(json.dumps(openapi_document()))["components"]["schemas"]
    assert STORED[TaskState] == schemas["TaskState"]["enum"]
    assert {"$ref": "#/components/schemas/TaskState"} == {
        k: v for k, v in schemas["Task"]["properties"]["state"].items() if k == "$ref"
    }
    assert STORED[DeliveryState] == schemas["DeliveryState"]["enum"]
    assert STORED[AttemptOutcome] == schemas["AttemptOutcome"]["enum"]
    assert {"type": "string", "format": "date-time"} == {
        k: v for k, v in schemas["Task"]["properties"]["created_at"].items() if k != "title"
    }
    events = schemas["TaskDetail"]["properties"]["events"]["items"]
    assert {"$ref": "#/components/schemas/EventDetail"} == events
    assert set(schemas["Task"]["required"]) < set(schemas["TaskDetail"]["required"])


def _stored_detail() -> dict[str, Any]:
    """A task detail as the store reads it: unix times, plain strings, nested rows."""
    attempt = {
        "id": 1,
        "delivery_id": "d1",
        "number": 1,
        "started_at": 1767225600.25,
        "finished_at": None,
        "outcome": "lost",
        "error": "lease expired",
        "blame": None,
    }
    delivery = {
        "id": "d1",
        "event_id": "e1",
        "handler": "disk",
        "state": "pending",
        "attempts": 1,
        "next_attempt_at": 1767225601.0,
        "lease_owner": None,
        "lease_until": 1767225630.5,
        "last_error": None,
        "blame": None,
        "result": None,
        "created_at": 1767225600.0,
        "updated_at": 1767225600.5,
        "stage": 0,
        "attempt_log": [attempt],
    }
    event = {
        "id": "e1",
        "inbox_id": "i1",
        "dedupe_key": "up-1:c1:song.completed",
        "task_id": "up-1",
        "task_ref": "ref-1",
        "clip_id": "c1",
        "kind": "song.completed",
        "platform": "producer",
        "source": "callback",
        "clip": {"title": "Night Drive", "duration": 104.88, "created_at": 1767225600},
        "error": None,
        "received_at": 1767225600.125,
        "deliveries": [delivery],
    }
    return {
        "id": "ref-1",
        "upstream_id": "up-1",
        "family": "producer",
        "platform": "producer",
        "state": "timed_out",
        "origin": "relay",
        "prompt": "rain",
        "params": {"webhook_url": "https://relay.example/webhooks/aimusic/secret-token"},
        "labels": {"team": "ads"},
        "handlers": None,
        "error": None,
        "created_at": 1767225599.0,
        "updated_at": 1767225600.0,
        "next_poll_at": None,
        "poll_attempts": 0,
        "deadline_at": 1767229200.0,
        "events": [event],
        "inbox": [
            {
                "id": "i1",
                "webhook_id": None,
                "source": "callback",
                "event_header": "song.completed",
                "received_at": 1767225600.0,
            }
        ],
    }


def test_a_row_model_answers_the_json_a_plain_row_did() -> None:
    """The API's JSON of a typed row is byte for byte what it was for the plain dict: same keys
    in the same order, same nulls, ISO times, and the callback token still hidden."""
    stored = _stored_detail()
    typed = TaskDetail.model_validate(stored)
    assert typed.state is TaskState.TIMED_OUT
    assert json.dumps(present(stored)) == json.dumps(present(typed))
    assert "secret-token" not in json.dumps(present(typed))


@pytest.mark.slow
def test_the_api_accepts_every_state_and_kind_and_nothing_else(relay: Relay) -> None:
    """Each member filters (200); any other value is a 400 that lists the members."""
    filters = [
        ("/api/tasks", "state", TaskState),
        ("/api/tasks", "family", Family),
        ("/api/events", "kind", EventKind),
        ("/api/deliveries", "state", DeliveryState),
    ]
    for path, name, enum in filters:
        for member in enum:
            answer = httpx.get(f"{relay.url}{path}", params={name: member}, headers=relay.admin)
            assert (path, name, member, 200) == (path, name, member, answer.status_code)
        answer = httpx.get(f"{relay.url}{path}", params={name: "nope"}, headers=relay.admin)
        assert 400 == answer.status_code
        assert ", ".join(STORED[enum]) in answer.json()["detail"]
