"""`present`: the one JSON view of stored rows (API, `--json`, dashboard)."""

from __future__ import annotations

from receiver.http.responses import present


def test_row_times_become_iso_but_what_the_caller_wrote_is_kept() -> None:
    """A row's `created_at` is a Unix time shown as ISO 8601; `continue_at` inside a task's
    params (seconds into the song an extend starts from) and a clip's own fields are shown
    exactly as written, at any depth."""
    row = {
        "created_at": 0,
        "params": {"continue_at": 3.0, "nested": {"cut_at": 7}},
        "events": [{"received_at": 60, "clip": {"created_at": 12}}],
    }
    assert {
        "created_at": "1970-01-01T00:00:00+00:00",
        "params": {"continue_at": 3.0, "nested": {"cut_at": 7}},
        "events": [{"received_at": "1970-01-01T00:01:00+00:00", "clip": {"created_at": 12}}],
    } == present(row)
