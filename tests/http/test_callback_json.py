"""The shortcut in `parse_json`: a body it lets through without walking it is one the walk
would have let through too."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.http.callback_json import _plainly_storable, check_storable, parse_json

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.characters(exclude_categories=())),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(_values, st.booleans(), st.sampled_from(["utf-8", "utf-16", "utf-32", "surrogatepass"]))
def test_the_shortcut_never_admits_what_the_walk_refuses(
    value: object, ascii_only: bool, encoding: str
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    body = (
        text.encode("utf-8", "surrogatepass")
        if encoding == "surrogatepass"
        else text.encode(encoding, "surrogatepass")
    )
    try:
        decoded = json.loads(body)
    except ValueError:
        return
    if _plainly_storable(body):
        check_storable(decoded)  # raises if the shortcut was wrong


def test_refusals_still_happen_on_the_short_path_bodies() -> None:
    """Each thing the walk refuses is refused through `parse_json` too."""
    refused = [
        b'{"a": "\\u0000"}',
        b'{"a": "\\ud800"}',
        b'{"a": "\xed\xa0\x80"}',
        "[" * 40 + "]" * 40,
        '{"a": "\ud800"}'.encode("utf-16", "surrogatepass"),
    ]
    for body in refused:
        raw = body if isinstance(body, bytes) else body.encode()
        try:
            parse_json(raw)
        except ValueError:
            continue
        raise AssertionError(f"{raw!r} was accepted")
    assert {"a": [1, {"b": "ü"}]} == parse_json('{"a": [1, {"b": "ü"}]}'.encode())
