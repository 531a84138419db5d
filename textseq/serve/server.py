"""Running the app: bind a socket (loopback unless asked), print the URL, serve until Ctrl-C.

>>> serve("runs/dates", host="127.0.0.1", port=0)  # doctest: +SKIP
serving runs/dates (translate) at http://127.0.0.1:40915/ -- Ctrl-C stops
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from textseq.errors import UserError
from textseq.serve.app import create_app

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MAX_CONNECTIONS = 64  # beyond it a request gets 503 at once instead of waiting


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
        self.loop.call_later(self.timeout_keep_alive, self._close_if_no_request, self.cycle)

    def _close_if_no_request(self, cycle):
        if self.cycle is cycle and (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


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
    if not is_loopback(host):
        say(f"warning: listening on {host}: anyone who can reach this machine on port {port} can use the model; "
            "there is no authentication")
    allowed = (*LOOPBACK_NAMES, *allowed_hosts) if is_loopback(host) else (allowed_hosts or None)
    app = create_app(run_dir, allowed)  # first: a run that does not load fails before the port is taken
    sock = bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    say(f"serving {run_dir} ({app.state.task}) at http://{shown_host}:{sock.getsockname()[1]}/ "
        "-- Ctrl-C stops")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           http=DeadlineH11Protocol, timeout_keep_alive=idle_timeout,
                                           limit_concurrency=MAX_CONNECTIONS))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down gracefully and raises the Ctrl-C again once done
    finally:
        sock.close()
    say("stopped")
