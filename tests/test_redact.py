"""`receiver.redact`, the one redaction every surface uses: secret-named keys at any depth,
known secret values inside any string, callback tokens in URLs and log lines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from receiver.redact import (
    HIDDEN,
    MASK,
    SECRET_WORDS,
    Redactor,
    hide_callback_token,
    is_secret_name,
    url_passwords,
)
from tests.conftest import REPO

TOKEN = "eyJ0YXNrIjoiYWJjIn0.Zm9v-bar_baz"
"""Shaped like a callback token: url-safe base64 and dots."""

# Every word one of the three former redactors hid by key name (dashboard, logs, doctor's
# checks by value only): none may stop being hidden.
FORMER_WORDS = (
    "secret",
    "token",
    "key",
    "password",
    "passwd",
    "authorization",
    "signature",
    "api_key",
    "cookie",
)


@pytest.mark.parametrize("word", FORMER_WORDS)
def test_every_former_secret_word_is_still_hidden(word: str) -> None:
    """A key naming any word a former redactor hid is hidden, whatever its case or affixes."""
    assert is_secret_name(f"X-{word.upper()}-Value"), word
    assert MASK == Redactor((), MASK).field(f"my_{word}", "s3cr3t-value")


def test_secret_words_are_one_sorted_list() -> None:
    """The word list is written once, sorted, with no word another already covers."""
    assert sorted(SECRET_WORDS) == list(SECRET_WORDS)
    assert all(a == b or a not in b for a in SECRET_WORDS for b in SECRET_WORDS)


def test_secret_named_keys_are_hidden_at_any_depth() -> None:
    """Nested dicts and lists are walked; a secret-named key hides its whole value, an empty
    value is shown (there is nothing in it), other keys keep theirs."""
    payload = {
        "title": "song",
        "headers": [{"Authorization": "Bearer abc", "Accept": "audio/*"}],
        "outer": {"inner": {"clientSecret": {"nested": "whole"}, "count": 3}},
        "apiKey": "",
        "session_cookie": None,
    }
    assert {
        "title": "song",
        "headers": [{"Authorization": HIDDEN, "Accept": "audio/*"}],
        "outer": {"inner": {"clientSecret": HIDDEN, "count": 3}},
        "apiKey": "",
        "session_cookie": None,
    } == Redactor(()).value(payload)


def test_known_values_are_hidden_longest_first() -> None:
    """A secret that contains another is hidden whole, not half-shown."""
    redactor = Redactor(["xoxb-long", "xoxb-long-token-1"], MASK)
    assert "refused *** (***)" == redactor.scrub("refused xoxb-long-token-1 (xoxb-long)")


def test_short_values_are_not_hidden_by_value() -> None:
    """Values under four characters would garble every text they occur in; four are hidden."""
    redactor = Redactor(["ab", "", "abcd"], MASK)
    assert "tab *** grab" == redactor.text("tab abcd grab")


def test_secrets_with_regex_characters_are_matched_literally() -> None:
    """A secret full of pattern characters is hidden as written, and nothing else is."""
    secret = r"a.b*c(d)[e]+?$^|\1{2}"
    redactor = Redactor([secret], MASK)
    assert "x *** y aXbc" == redactor.scrub(f"x {secret} y aXbc")
    assert {"note": "***!"} == redactor.value({"note": f"{secret}!"})


def test_with_values_keeps_the_old_ones_and_the_placeholder() -> None:
    """A task's derived secret is added to the page's, shown with the same placeholder."""
    redactor = Redactor(["settings-secret"], MASK).with_values(["task-secret"])
    assert "*** ***" == redactor.text("settings-secret task-secret")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"https://relay.example/webhooks/aimusic/{TOKEN}?x=1#top",
            "https://relay.example/webhooks/aimusic/(hidden)?x=1#top",
        ),
        (
            f"request method=POST path=/webhooks/aimusic/{TOKEN} status=401",
            "request method=POST path=/webhooks/aimusic/(hidden) status=401",
        ),
        (
            json.dumps({"webhook_url": f"https://r/webhooks/aimusic/{TOKEN}"}),
            '{"webhook_url": "https://r/webhooks/aimusic/(hidden)"}',
        ),
        (
            f"<code>/webhooks/aimusic/{TOKEN}</code> and '/webhooks/aimusic/{TOKEN}'",
            "<code>/webhooks/aimusic/(hidden)</code> and '/webhooks/aimusic/(hidden)'",
        ),
        ("POST /webhooks/aimusic (shared route)", "POST /webhooks/aimusic (shared route)"),
    ],
)
def test_callback_tokens_are_cut_out_of_urls_and_log_lines(text: str, shown: str) -> None:
    """Only the token's path segment goes: the query, the fragment, quotes and markup stay."""
    assert shown == hide_callback_token(text)
    assert shown == Redactor(()).text(text)


def test_scrub_hides_secret_query_parameters_but_text_keeps_links_working() -> None:
    """`text` leaves a signed media link playable; `scrub` (for reading) hides its signature,
    also in a URL too broken for `urlsplit`."""
    link = "https://cdn.example/a.mp3?X-Amz-Signature=abc123&size=2"
    redactor = Redactor((), MASK)
    assert link == redactor.text(link)
    assert "https://cdn.example/a.mp3?X-Amz-Signature=***&size=2" == redactor.scrub(link)
    assert "see http://[::1?token=***#x" == redactor.scrub("see http://[::1?token=abc#x")


def test_url_passwords_as_written_and_decoded() -> None:
    """A DATABASE_URL's password is hidden in both spellings; a URL without one gives none."""
    assert ["p%40ss-word", "p@ss-word"] == url_passwords("postgresql://u:p%40ss-word@db/x")
    assert [] == url_passwords("sqlite:///./relay.db")
    assert [] == url_passwords("postgresql://u:pw@[bad/x")


def test_pretty_redacts_json_and_plain_text() -> None:
    """Payloads read on the dashboard: JSON indented and redacted, other text scrubbed."""
    redactor = Redactor(["hunter2-secret"])
    shown = json.loads(redactor.pretty(b'{"password": "x", "note": "hunter2-secret"}'))
    assert {"note": HIDDEN, "password": HIDDEN} == shown
    assert f"not json {HIDDEN}" == redactor.pretty("not json hunter2-secret")


def test_logs_redact_fields_values_tokens_and_tracebacks() -> None:
    """A JSON log line, in a fresh process with logging as `serve` sets it up, hides a
    secret-named field, a secret inside any string, a callback token and a secret quoted
    by an exception's traceback."""
    script = textwrap.dedent(
        f"""
        from receiver.logging import configure_logging, get_logger
        configure_logging("info", "json", ["hunter2-secret"])
        log = get_logger()
        log.info("call", api_key="plain-key", note="uses hunter2-secret",
                 path="/webhooks/aimusic/{TOKEN}", count=2)
        try:
            raise RuntimeError("refused hunter2-secret")
        except RuntimeError:
            log.exception("failed")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert 0 == done.returncode, done.stderr
    call, failed = (json.loads(line) for line in done.stderr.splitlines())
    assert ("***", "uses ***", "/webhooks/aimusic/(hidden)", 2) == (
        call["api_key"],
        call["note"],
        call["path"],
        call["count"],
    )
    assert "RuntimeError: refused ***" in failed["exception"]
    assert "hunter2-secret" not in done.stderr and TOKEN not in done.stderr
