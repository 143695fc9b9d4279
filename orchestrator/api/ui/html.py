"""HTML for the operator page, built from strings: every value goes through :func:`esc`.

No template engine and no script: a page is a layout around a few tables and forms. :class:`Html`
marks text that is markup already, so that helpers escape plain values and pass markup through.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse

from models.principal import Principal

PREFIX = "/ui"
NAV = (
    ("sagas", "Sagas"),
    ("items", "Work items"),
    ("queues", "Queues"),
    ("dead-letters", "Dead letters"),
    ("mutexes", "Mutex scopes"),
)
# No script runs on these pages, no page of theirs may be framed, and no form posts elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfe0ff;text-decoration:none} header a.on{color:#fff;font-weight:600}
header .who{margin-left:auto;color:#aab} header form{display:inline}
main{padding:1em 1.4em;max-width:1400px}
table{border-collapse:collapse;background:#fff;width:100%;margin:.4em 0 1.2em}
th,td{border-bottom:1px solid #e3e6ea;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
code,.mono{font-family:ui-monospace,monospace;font-size:12.5px} td code{white-space:nowrap}
.state{display:inline-block;padding:0 .5em;border-radius:3px;background:#e3e6ea}
.s-completed,.s-succeeded,.s-compensated,.s-done{background:#d5f0dc}
.s-running,.s-compensating,.s-dispatched,.s-in_progress{background:#dde8ff}
.s-failed,.s-compensation_failed,.s-timed_out,.s-lost{background:#fbd9d6}
.s-cancelled,.s-terminated,.s-paused{background:#f6e7c1}
.graph{display:flex;flex-wrap:wrap;gap:.3em;align-items:center;margin:.5em 0 1em}
.graph .step{border:1px solid #c5cbd3;border-radius:4px;padding:.35em .7em;background:#fff}
.box{background:#fff;border:1px solid #e3e6ea;padding:.7em 1em;margin:.5em 0 1em}
.error{background:#fbd9d6;border:1px solid #e6a39c;padding:.7em 1em}
.notice{background:#d5f0dc;border:1px solid #9bd3a9;padding:.5em 1em}
form.inline{display:inline-block;margin:0 .6em .4em 0}
input,select,textarea,button{font:inherit} textarea{width:40em;height:5em}
.controls{display:flex;flex-wrap:wrap;gap:.6em}
.controls form{background:#fff;border:1px solid #e3e6ea;padding:.5em .7em}
.muted{color:#6b7480}
"""


class Html(str):
    """Text that is markup already: not escaped again. Adding plain text to it escapes that text."""

    def __add__(self, other: str) -> Html:
        return Html(str.__add__(self, esc(other)))

    def __radd__(self, other: str) -> Html:
        return Html(str.__add__(esc(other), self))


def esc(value: Any) -> Html:
    """``value`` as HTML text: markup passes through, None is a dash, datetimes read as UTC."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html('<span class="muted">–</span>')
    if isinstance(value, datetime):
        return Html(html.escape(value.strftime("%Y-%m-%d %H:%M:%S")))
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def tag(name: str, body: Any = "", /, **attrs: Any) -> Html:
    """``<name attrs>body</name>``; an attribute of value None or False is left out, True is bare."""
    rendered = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        rendered.append(f" {attr}" if value is True else f' {attr}="{esc(value)}"')
    return Html(f"<{name}{''.join(rendered)}>{esc(body)}</{name}>")


def link(href: str, text: Any) -> Html:
    return tag("a", text, href=href)


def url(path: str, **query: Any) -> str:
    """A /ui URL with the query parameters that have a value."""
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{PREFIX}{path}" + (f"?{urlencode(params)}" if params else "")


def state(value: Any) -> Html:
    text = str(getattr(value, "value", value))
    return tag("span", text, class_=f"state s-{text}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing here") -> Html:
    body = [tag("tr", join(tag("td", cell) for cell in row)) for row in rows]
    if not body:
        body = [tag("tr", tag("td", tag("span", empty, class_="muted"), colspan=len(headers)))]
    return tag("table", tag("thead", tag("tr", join(tag("th", h) for h in headers))) + tag("tbody", join(body)))


def hidden(name: str, value: str) -> Html:
    return Html(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">')


def post_form(action: str, csrf: str, body: Any, *, button: str, class_: str | None = None) -> Html:
    """A form that posts to ``action`` with the session's CSRF token."""
    return tag(
        "form",
        join([hidden("csrf", csrf), body, tag("button", button, type="submit")]),
        method="post",
        action=action,
        class_=class_,
    )


def page(
    title: str, body: Any, *, principal: Principal | None = None, csrf: str | None = None, active: str = ""
) -> Html:
    """A whole page: the header (navigation and who is signed in, when someone is) and ``body``."""
    header: list[Any] = [tag("strong", "workyard")]
    if principal is not None:
        header += [
            link(url(f"/{path}"), name) if path != active else tag("a", name, href=url(f"/{path}"), class_="on")
            for path, name in NAV
        ]
        who = f"{principal.ref} · tenant {principal.tenant}"
        header.append(tag("span", who, class_="who"))
        if csrf is not None:
            header.append(post_form(url("/signout"), csrf, "", button="Sign out"))
    return Html(
        Html("<!doctype html>")
        + tag(
            "html",
            tag(
                "head",
                Html('<meta charset="utf-8"><meta name="viewport" content="width=device-width">')
                + tag("title", f"{title} · workyard")
                + tag("style", Html(STYLE)),
            )
            + tag("body", tag("header", join(header)) + tag("main", tag("h1", title) + esc(body))),
            lang="en",
        )
    )


def error_page(status: int, message: str, principal: Principal | None = None) -> Html:
    """What a refused or failed request shows: its status and message, never a traceback."""
    body = tag("div", tag("strong", f"{status}: ") + esc(message), class_="error")
    back = tag("p", link(url("/sagas"), "Back to the sagas"))
    return page("Not done" if status < 500 else "Error", body + back, principal=principal)


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """An error of a /ui request, as a page."""
    return HTMLResponse(
        error_page(status, message), status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )
