"""One table maps an upstream error to the status both the API and the dashboard answer."""

from __future__ import annotations

import pytest

from receiver.dashboard.forms import upstream_message
from receiver.errors import OutcomeUnknown, RateLimited, UpstreamError, UpstreamUnavailable
from receiver.upstream.statuses import UPSTREAM_STATUSES, UpstreamStatus, upstream_status


def _error(row: UpstreamStatus) -> UpstreamError:
    if row.kind is RateLimited:
        return RateLimited("slow down", retry_after=3)
    return row.kind("the provider's words")


@pytest.mark.parametrize("row", UPSTREAM_STATUSES, ids=lambda r: r.kind.__name__)
def test_each_error_has_one_status_for_api_and_dashboard(row: UpstreamStatus) -> None:
    """The dashboard's status is the API's, and its sentence ends with the provider's words."""
    exc = _error(row)
    assert row == upstream_status(exc)
    status, sentence = upstream_message(exc)
    assert (row.status, f"{row.wording}: {exc.message}") == (status, sentence)


@pytest.mark.parametrize("kind", [UpstreamError, UpstreamUnavailable, OutcomeUnknown])
def test_any_other_upstream_error_is_a_502(kind: type[UpstreamError]) -> None:
    """An unreachable provider, a 5xx or an unknown error: 502 `upstream_error`."""
    answer = upstream_status(kind("down"))
    assert (502, "upstream_error") == (answer.status, answer.code)
    assert 502 == upstream_message(kind("down"))[0]


def test_no_row_hides_another() -> None:
    """No error type in the table is a subclass of another, so row order cannot matter."""
    kinds = [row.kind for row in UPSTREAM_STATUSES]
    assert [] == [(a, b) for a in kinds for b in kinds if a is not b and issubclass(a, b)]
