"""Running the app: bind a socket (loopback unless asked), print the URL, serve until Ctrl-C.

>>> serve("runs/dates", host="127.0.0.1", port=0)  # doctest: +SKIP
serving runs/dates (translate) at http://127.0.0.1:40915/ -- Ctrl-C stops
"""

from __future__ import annotations

import ipaddress
import math
import socket
from pathlib import Path
from typing import Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from textseq.errors import UserError
from textseq.serve.app import create_app, error_response

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MAX_REQUESTS = 64  # requests in progress; beyond, a request gets 503 at once instead of waiting
MAX_WAITING = 64  # connections awaiting a request head before new ones get a short deadline
CROWDED_SECONDS = 1.0  # that deadline: time enough for any client on loopback or a LAN to send a head


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for every request head: a connection that sends
    no complete request within the idle timeout of opening, or of its last answer, is closed.

    uvicorn by itself times out only a kept-alive connection that stays silent, so a connection
    that never sends a byte, or sends its headers one at a time, would stay open for good.
    """

    def connection_made(self, transport):
        super().connection_made(transport)
        self._await_request()

    def on_response_complete(self):
        super().on_response_complete()
        self._await_request()

    def _await_request(self):
        # Many connections without a request (trickling headers, or just open): new ones get a short
        # deadline, so they cannot hold the server for the whole idle timeout.
        waiting = sum(1 for connection in self.server_state.connections if connection._awaits_request())
        deadline = self.timeout_keep_alive if waiting <= MAX_WAITING else min(self.timeout_keep_alive, CROWDED_SECONDS)
        self.loop.call_later(deadline, self._close_if_no_request, self.cycle)

    def _awaits_request(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _close_if_no_request(self, cycle):
        if self.cycle is cycle and (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


class RequestLimit:
    """An ASGI wrapper: at most `limit` requests in progress, the rest answered 503 at once. It counts
    requests whose head is complete, so connections that trickle their headers take no place.
    (uvicorn's own limit counts open connections: 64 slow clients made it refuse everyone.)"""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            busy = error_response(f"the server is answering {self.limit} requests; try again in a moment", 503)
            busy.headers["retry-after"] = "1"
            return await busy(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a UserError that says what to do."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise UserError(f"--host {host}: not an address of this machine ({error.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); choose another port, "
                        "or --port 0 for a free one") from None
    sock.listen(128)
    return sock


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, say: Callable[[str], None] = print,
          allowed_hosts: tuple[str, ...] = (), idle_timeout: float = 10.0) -> None:
    """Serves the run's page and API until Ctrl-C (or SIGTERM), then returns.

    On loopback only requests addressed to localhost, 127.0.0.1 or [::1] (and `allowed_hosts`) are
    answered; on another address, any host name unless `allowed_hosts` are given. A connection
    that sends no request for `idle_timeout` seconds is closed.
    """
    if not (math.isfinite(idle_timeout) and 0 < idle_timeout <= 3600):
        raise UserError(f"--idle-timeout {idle_timeout}: expected seconds, more than 0 and at most 3600")
    if not is_loopback(host):
        say(f"warning: listening on {host}: anyone who can reach this machine on port {port} can use the model; "
            "there is no authentication")
    allowed = (*LOOPBACK_NAMES, *allowed_hosts) if is_loopback(host) else (allowed_hosts or None)
    app = create_app(run_dir, allowed)  # first: a run that does not load fails before the port is taken
    sock = bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    say(f"serving {run_dir} ({app.state.task}) at http://{shown_host}:{sock.getsockname()[1]}/ "
        "-- Ctrl-C stops")
    server = uvicorn.Server(uvicorn.Config(RequestLimit(app, MAX_REQUESTS), log_level="warning", access_log=False,
                                           lifespan="off", http=DeadlineH11Protocol, timeout_keep_alive=idle_timeout))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down gracefully and raises the Ctrl-C again once done
    finally:
        sock.close()
    say("stopped")
