"""The CLI's way to a running workyard: its HTTP API, with a URL and a token.

Commands over the API (``saga``, ``template``, ``item``, ``dead-letters``, ``webhooks``) need no
database credentials: ``--url``/``--token`` (or ``WORKYARD_URL``/``WORKYARD_TOKEN``), else the
embedded stack of the data dir: its API address (``WORKYARD_API_HOST``/``WORKYARD_API_PORT``)
and the operator token ``workyard up`` keeps in ``<data dir>/admin-token``.

This module is on the path of every such command, so it imports only click and httpx (no
SQLAlchemy, Celery, FastAPI, pydantic-settings nor the API's models): a command starts in a
fraction of a second. Answers are the API's JSON as is; a command that renders a typed model
(``saga show``) imports it itself.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from orchestrator.cli.base import Failure

if TYPE_CHECKING:
    import httpx

P = ParamSpec("P")
R = TypeVar("R")

# The same defaults as config.settings.Settings (a unit test holds them equal): read here from
# the environment directly, as loading the settings costs more than the rest of a command.
DEFAULT_DATA_DIR = ".workyard"
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8700
TIMEOUT_S = 30.0


def default_url() -> str:
    """The embedded stack's API: WORKYARD_API_HOST:WORKYARD_API_PORT (a wildcard host as loopback)."""
    host = os.environ.get("WORKYARD_API_HOST") or DEFAULT_API_HOST
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('WORKYARD_API_PORT') or DEFAULT_API_PORT}"


def admin_token_path() -> Path:
    return Path(os.environ.get("WORKYARD_DATA_DIR") or DEFAULT_DATA_DIR) / "admin-token"


@dataclass
class Api:
    """One command's connection to the API: ``call`` answers the JSON of a success, and turns
    every failure into a one-line :class:`Failure` that says what to do."""

    url: str
    token: str
    url_from: str  # where the URL came from, for the error that says it cannot be reached
    token_from: str  # where the token came from, for a 401/403

    def __post_init__(self) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=TIMEOUT_S
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def get_or_none(self, path: str, *, statuses: tuple[int, ...], **params: Any) -> Any:
        """As :meth:`get`, but None when the API answers one of ``statuses`` (say a 403: the
        token may not read what a command only adds as advice)."""
        import httpx

        try:
            response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.TransportError as exc:
            raise Failure(self.unreachable(exc)) from exc
        if response.status_code in statuses:
            return None
        if response.status_code >= 400:
            raise Failure(self.refused(response))
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, json=body)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON (None for an empty answer)."""
        response = self.send(method, path, **kwargs)
        return response.json() if response.content else None

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Failure(self.unreachable(exc)) from exc
        if response.status_code >= 400:
            raise Failure(self.refused(response))
        return response

    def unreachable(self, exc: Exception) -> str:
        return (
            f"cannot reach the workyard API at {self.url} ({self.url_from}): "
            f"{type(exc).__name__}: {exc or 'no answer'}. "
            "Start the stack with `workyard up`, or pass --url / set WORKYARD_URL to a running API"
        )

    def refused(self, response: httpx.Response) -> str:
        """The API's error answer as one line: its message; for a 401/403 also which token."""
        code, message = _error(response)
        if response.status_code == 401:
            return (
                f"the API at {self.url} does not accept the token from {self.token_from}: {message}. "
                "Pass --token or set WORKYARD_TOKEN to a token from `workyard token create`"
            )
        if response.status_code == 403:
            return (
                f"the token from {self.token_from} may not do this: {message} "
                "(an operator's token has the admin scope; see `workyard token create --scope`)"
            )
        if code in ("http_error", "internal") or response.status_code >= 500:
            return f"the API at {self.url} answered {response.status_code}: {message}"
        return message


def _error(response: httpx.Response) -> tuple[str, str]:
    """The code and message of the API's one error shape (anything else, say a proxy's page, as
    ``http_error``), read as the agents' client reads it. Imported here, on the way out only:
    the client's models cost more than the rest of a command."""
    from workers.client import api_error

    error = api_error(response)
    return error.code, " ".join(error.message.split())[:500] or response.reason_phrase


def connect(url: str | None, token: str | None) -> Api:
    """The API of ``url`` with ``token``, each defaulting to the data dir's embedded stack."""
    # Read here too: click fills envvars in for options on the command line's path, not for a
    # command another one invokes (``workyard dead-letters`` lists).
    url = url or os.environ.get("WORKYARD_URL") or None
    token = token or os.environ.get("WORKYARD_TOKEN") or None
    url_from = "--url or WORKYARD_URL" if url else "the default: WORKYARD_API_HOST / WORKYARD_API_PORT"
    token_from = "--token or WORKYARD_TOKEN"
    if not token and url and url.rstrip("/") != default_url().rstrip("/"):
        # The data dir's token is the embedded stack's operator token: never sent elsewhere.
        raise Failure(
            f"no token for {url}: pass --token or set WORKYARD_TOKEN (the data dir's admin token is only "
            f"sent to the embedded stack's API, {default_url()})"
        )
    if not token:
        path = admin_token_path()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Failure(
                f"no token: pass --token or set WORKYARD_TOKEN (a token from `workyard token create`); "
                f"{path} (the embedded stack's, written by `workyard up`) cannot be read: {exc.strerror or exc}"
            ) from exc
        token_from = str(path)
        if not token:
            raise Failure(f"{path} is empty: pass --token or set WORKYARD_TOKEN")
    return Api((url or default_url()).rstrip("/"), token, url_from, token_from)


def over_api(command: Callable[Concatenate[Api, P], R]) -> Callable[P, R]:
    """A command that talks to the API: adds ``--url`` and ``--token`` and passes the connection
    as the first argument (closed when the command returns)."""

    @click.option(
        "--token",
        envvar="WORKYARD_TOKEN",
        default=None,
        show_envvar=True,
        help="Bearer token (default: the embedded stack's, <data dir>/admin-token).",
    )
    @click.option(
        "--url",
        envvar="WORKYARD_URL",
        default=None,
        show_envvar=True,
        help="The workyard API (default: http://WORKYARD_API_HOST:WORKYARD_API_PORT, http://127.0.0.1:8700).",
    )
    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        url = kwargs.pop("url")
        token = kwargs.pop("token")
        api = connect(url if isinstance(url, str) else None, token if isinstance(token, str) else None)
        try:
            return command(api, *args, **kwargs)
        finally:
            api.close()

    return run


def json_option(command: Callable[P, R]) -> Callable[P, R]:
    """``--json``: print the API's answer as JSON instead of lines."""
    return click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")(command)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def pages(api: Api, path: str, limit: int, **params: Any) -> Iterator[dict[str, Any]]:
    """Up to ``limit`` items of a paged listing, following next_cursor."""
    cursor = None
    left = limit
    while left > 0:
        page = api.get(path, limit=min(left, 500), cursor=cursor, **params)
        yield from page["items"][:left]
        left -= len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor or not page["items"]:
            return


def segment(value: str) -> str:
    """``value`` as one path segment (an id with a slash stays one id)."""
    from urllib.parse import quote

    return quote(value, safe="")


def when(text: str | None) -> str:
    """An API timestamp as the CLI shows it: ``2025-01-31 12:00:00`` (UTC), ``-`` for none."""
    return "-" if not text else text.replace("T", " ")[:19]


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
