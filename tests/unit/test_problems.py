"""How a dead letter keeps a body it could not act on."""

from __future__ import annotations

from models.problems import MAX_BODY_CHARS, body_text


def test_bytes_that_are_not_utf8_are_kept_as_escapes() -> None:
    assert body_text(b"ok \xff\xfe") == "ok \\xff\\xfe"


def test_nul_is_escaped_wherever_it_comes_from() -> None:
    # PostgreSQL's text refuses NUL, and SQLite's LIKE stops at one.
    assert body_text(b"a\x00b") == "a\\x00b"
    assert body_text("a\x00b") == "a\\x00b"
    assert body_text({"k": "a\x00b"}) == '{"k": "a\\u0000b"}'


def test_a_body_is_bounded() -> None:
    assert len(body_text(b"x" * (MAX_BODY_CHARS * 10))) == MAX_BODY_CHARS
    assert len(body_text("\x00" * MAX_BODY_CHARS)) == MAX_BODY_CHARS
    assert len(body_text(list(range(MAX_BODY_CHARS)))) == MAX_BODY_CHARS
