"""Serve the portal with daphne, its websocket and request-head limits set here.

    python -m portal.serve -b 127.0.0.1 -p 8000      # other daphne options pass through

daphne refuses websocket messages over 1 MiB unless told otherwise, and drops the connection
without a word; the protocol allows frames of MAX_FRAME_BYTES (4 MiB, dcp/protocol/limits.py).
So the transport here takes a little more than that, and the scheduler's own check answers a
frame over the limit with close code 4009, the same on every server that runs the portal this
way (`make run`, the tests, the benchmarks).

daphne parses HTTP with twisted's HTTPChannel, which drops the connection without a reply
when the request line or one header line is over 16 KiB, and answers a bare 400 with no body
when the whole head is. Here every HTTP connection (websocket upgrades included, they start as
HTTP requests) gets HeadLimitedChannel instead: a request whose head is over
MAX_REQUEST_HEAD_BYTES is answered 414 (the request line alone is too long) or 431 (the head
is), any other request twisted cannot parse 400, each with a one-line body, and the log gets
one warning line.
"""

from __future__ import annotations

import logging
import os
import sys
from http import HTTPStatus
from typing import Any

# daphne before twisted.web: importing daphne installs twisted's asyncio reactor
from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.web import http

TRANSPORT_HEADROOM_BYTES = 64 * 1024  # beyond the protocol's limit, so its own check answers
MAX_REQUEST_HEAD_BYTES = 16 * 1024  # request line and headers together, without line ends
MAX_HEADER_FIELDS = 500  # twisted's own limit, named here so the 400 reply can say it
LINGER_SECONDS = 2  # after a refusal, read and discard what the client still sends

logger = logging.getLogger("portal.serve")


class HeadLimitedChannel(http.HTTPChannel):
    """twisted's HTTP/1.1 channel, but a request it refuses gets a status, a body and a log line."""

    MAX_LENGTH = MAX_REQUEST_HEAD_BYTES  # one line; the head's total is checked in lineReceived
    totalHeadersSize = MAX_REQUEST_HEAD_BYTES
    maxHeaders = MAX_HEADER_FIELDS

    def __init__(self) -> None:
        super().__init__()
        self.head_bytes = 0  # of the request being read
        self.request_line = b""
        self.refused = False

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: the reply is out, what follows is discarded
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        self.head_bytes += len(line)
        if self.head_bytes > MAX_REQUEST_HEAD_BYTES:
            self.refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self.head_too_large())
            return
        if line and not self.request_line:
            self.request_line = line
        super().lineReceived(line)

    def allContentReceived(self) -> None:
        self.head_bytes = 0  # the next request on this connection starts a new head
        self.request_line = b""
        super().allContentReceived()

    def lineLengthExceeded(self, line: bytes) -> None:
        if not self.request_line:
            self.request_line = line
            self.refuse(HTTPStatus.REQUEST_URI_TOO_LONG, self.request_line_too_long())
        else:
            self.refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self.head_too_large())

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted's answer to every request it cannot parse: a bare 400 and a dropped connection
        reason = f"malformed request line or header, or more than {MAX_HEADER_FIELDS} headers"
        self.refuse(HTTPStatus.BAD_REQUEST, reason)

    @staticmethod
    def request_line_too_long() -> str:
        return f"request line (method, URL, version) over {MAX_REQUEST_HEAD_BYTES} bytes"

    @staticmethod
    def head_too_large() -> str:
        return f"request line and headers over {MAX_REQUEST_HEAD_BYTES} bytes together"

    def refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer `status` with `reason` as its body, log one line, and close once the client
        has had time to read the reply (closing on unread input would reset the connection
        and could destroy the reply before the client reads it)."""
        if self.refused:
            return
        self.refused = True
        self.clearLineBuffer()
        transport: Any = self.transport  # zope interfaces, which mypy cannot call
        peer = transport.getPeer()
        client = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        start = ascii(self.request_line[:80].decode("latin-1"))
        logger.warning("%s %s from %s: %s (%s)", status.value, status.phrase, client, reason, start)
        transport.write(plain_text_reply(status, reason))
        transport.loseWriteConnection()  # the client reads the reply, then the end of stream
        self.setTimeout(LINGER_SECONDS)  # never reset by discarded input: a bound, not idle time


def plain_text_reply(status: HTTPStatus, reason: str) -> bytes:
    """A whole HTTP/1.1 response: `status`, and `reason` as a one-line text body."""
    body = f"{status.value} {status.phrase}: {reason}.\n".encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def head_limited_protocol() -> Any:
    """One HTTP connection's protocol, as twisted's HTTPFactory builds it (a wrapper that
    could switch to HTTP/2 after ALPN), around a HeadLimitedChannel."""
    return http._GenericHTTPChannelProtocol(HeadLimitedChannel())


class PortalServer(Server):
    """daphne's server, every HTTP connection on a HeadLimitedChannel."""

    @property
    def http_factory(self) -> Any:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: Any) -> None:
        # Server.run() makes daphne's HTTPFactory and listens with it; twisted's factory
        # builds each connection with `protocol()`, daphne then sets its request class on it.
        factory.protocol = head_limited_protocol
        self._http_factory = factory


def daphne_arguments(argv: list[str]) -> list[str]:
    """daphne's command line: the websocket limits, then `argv`, then the application."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.conf import settings

    limit = str(settings.MAX_FRAME_BYTES + TRANSPORT_HEADROOM_BYTES)
    sizes = ["--websocket-max-message-size", limit, "--websocket-max-frame-size", limit]
    return [*sizes, *argv, "portal.asgi:application"]


def main() -> None:
    cli = CommandLineInterface()
    cli.server_class = PortalServer
    cli.run(daphne_arguments(sys.argv[1:]))


if __name__ == "__main__":
    main()
