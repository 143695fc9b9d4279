"""The operator page's HTML building escapes every value it is given (orchestrator.api.ui.html)."""

from __future__ import annotations

from orchestrator.api.ui.html import Html, esc, join, page, table, tag, url

EVIL = '<script>alert("x")</script>&'


def test_values_are_escaped_and_markup_is_not_escaped_twice() -> None:
    assert esc(EVIL) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    assert esc(Html("<b>ok</b>")) == "<b>ok</b>"
    assert tag("p", EVIL) == f"<p>{esc(EVIL)}</p>"
    assert tag("a", "x", href='" onclick="evil') == '<a href="&quot; onclick=&quot;evil">x</a>'
    # Adding plain text to markup escapes the text, from either side.
    assert Html("<i>") + EVIL == f"<i>{esc(EVIL)}"
    assert EVIL + Html("<i>") == f"{esc(EVIL)}<i>"
    assert join([EVIL, Html("<br>")]) == f"{esc(EVIL)}<br>"


def test_tables_pages_and_urls_escape_what_they_hold() -> None:
    html = table(["h"], [(EVIL,)])
    assert "<script>" not in html and esc(EVIL) in html
    assert "<script>" not in page(EVIL, EVIL)
    assert url("/sagas", template="a&b c", state=None) == "/ui/sagas?template=a%26b+c"
