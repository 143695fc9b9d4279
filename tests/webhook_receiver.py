"""A real HTTP(S) server that records webhook requests and answers with scripted statuses."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answered in order; then 200
    requests: list[Received] = field(default_factory=list)
    # When set: each request is recorded, then held unanswered until this event is set.
    hold: threading.Event | None = None
    held: int = 0
    active: int = 0  # requests being answered now
    most_active: int = 0  # the most that ever were at once
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI of each handshake


@contextmanager
def webhook_receiver(*, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> Iterator[Receiver]:
    """A receiver on 127.0.0.1; its URL names ``host`` (which must resolve there); with ``tls``, HTTPS."""
    receiver = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with lock:
                receiver.active += 1
                receiver.most_active = max(receiver.most_active, receiver.active)
            try:
                self.answer()
            finally:
                with lock:
                    receiver.active -= 1

        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            if receiver.hold is not None:
                with lock:
                    receiver.held += 1
                receiver.hold.wait(timeout=60)
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"try later")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: receiver.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    receiver.url = f"{scheme}://{host}:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
