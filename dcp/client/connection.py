"""One authenticated client socket to the scheduler: requests with ids, events in between.

Network trouble (refused, dropped, silent) is raised as `ConnectionLost`, which exec() answers
by reconnecting; an `error` reply from the scheduler is raised as `DCPError`, which is final.
Requests go out as dicts built from the protocol's request models (`frame_of`); what comes back
is parsed with the protocol's reply models, and a reply of the wrong type is `EPROTOCOL`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from ..errors import DCPError
from ..keys.keystore import address_of
from ..protocol.limits import FRAME_HEADROOM_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION
from ..protocol.messages import (
    Challenge,
    ClientHello,
    ClientWelcome,
    Error,
    Event,
    Message,
    client_replies,
)
from ..protocol.signed import session_text, sign_text

__all__ = [
    "Backoff",
    "ConnectionLost",
    "Session",
    "check_frame_size",
    "frame_of",
    "with_session",
]

OPEN_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 120.0  # a deploy of many values can keep the scheduler busy a while
MAX_INCOMING_BYTES = 256 * 1024 * 1024  # a page of 10,000 results can be large
FATAL_HTTP_STATUSES = {400, 401, 403, 404, 405, 410}
RECONNECT_FIRST_DELAY_S = 0.25
RECONNECT_MAX_DELAY_S = 5.0
RECONNECT_GIVE_UP_S = 60.0

Frame = dict[str, Any]
EventHandler = Callable[[Event], None]


def frame_of(request: Message) -> Frame:
    """The dict to send for a request model: the fields it was given, as JSON values."""
    return request.model_dump(mode="json", exclude_unset=True)


class ConnectionLost(Exception):
    """The socket could not be opened, closed, or went silent: worth another try."""


class Session:
    """An open client socket whose identity the scheduler has accepted (after `welcome`)."""

    def __init__(
        self, socket: ClientConnection, closer: contextlib.ExitStack | None = None
    ) -> None:
        self._socket = socket
        self._closer = closer or contextlib.ExitStack()
        self._next_id = 1
        self.welcome: ClientWelcome | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, url: str, identity_key: bytes) -> Iterator[Session]:
        """An authenticated session to `url`: the idle one this process kept from its last job
        when it is still open (saves the connect and the challenge), else a new one. A session
        left cleanly is kept for the next job; one left by an exception is closed."""
        key = (url, address_of(identity_key))
        session = _idle_sessions.take(key)
        if session is None:
            closer = contextlib.ExitStack()
            session = cls(closer.enter_context(_connect(url)), closer)
            try:
                session._authenticate(identity_key)
            except BaseException:
                session.close()
                raise
        try:
            yield session
        except BaseException:
            session.close()
            raise
        _idle_sessions.keep(key, session)

    @property
    def is_open(self) -> bool:
        return self._socket.protocol.state is State.OPEN

    def close(self) -> None:
        """Close the socket (a clean close frame when it is still open)."""
        with contextlib.suppress(Exception):
            self._closer.close()

    def request[R: Message](self, frame: Frame, on_event: EventHandler, reply: type[R]) -> R:
        """Send `frame` with a fresh id and return its reply, a `reply`; events before it go
        to `on_event`. An `error` reply is raised as DCPError."""
        request_id = self._next_id
        self._next_id += 1
        self.send({**frame, "id": request_id})
        while True:
            received = self.receive(REPLY_TIMEOUT_S)
            if received is None:
                raise ConnectionLost(f"no reply to {frame['type']} in {REPLY_TIMEOUT_S:.0f} s")
            if received.get("id") != request_id:
                _pass_event(received, on_event)
                continue
            answer = _parse_reply(received, frame["type"])
            if isinstance(answer, Error):
                raise DCPError(answer.code or "EUNKNOWN", answer.message)
            if not isinstance(answer, reply):
                raise _unexpected(frame["type"], received)
            return answer

    def send(self, frame: Frame) -> None:
        """Send one JSON frame."""
        try:
            self._socket.send(json.dumps(frame))
        except (ConnectionClosed, OSError) as exc:
            raise ConnectionLost(_describe(exc)) from exc

    def receive(self, timeout: float) -> Frame | None:
        """The next JSON object frame, or None when nothing came within `timeout` seconds."""
        while True:
            try:
                message = self._socket.recv(timeout=timeout)
            except TimeoutError:
                return None
            except (ConnectionClosed, OSError) as exc:
                raise ConnectionLost(_describe(exc)) from exc
            frame = _parse(message)
            if frame is not None:
                return frame

    def _authenticate(self, identity_key: bytes) -> None:
        received = self.receive(OPEN_TIMEOUT_S)
        if received is None:
            raise ConnectionLost("the scheduler sent no challenge")
        challenge = _parse_challenge(received)
        hello = ClientHello(
            type="hello",
            version=PROTOCOL_VERSION,
            identity=address_of(identity_key),
            signature=sign_text(identity_key, session_text(challenge.nonce)),
        )
        self.welcome = self.request(frame_of(hello), ignore_events, ClientWelcome)


class IdleSessions:
    """At most one idle authenticated session per (scheduler, identity), for the next job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], Session] = {}

    def take(self, key: tuple[str, str]) -> Session | None:
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None and not session.is_open:
            session.close()
            return None
        return session

    def keep(self, key: tuple[str, str], session: Session) -> None:
        with self._lock:
            previous = self._sessions.pop(key, None)
            self._sessions[key] = session
        if previous is not None:
            previous.close()

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()


_idle_sessions = IdleSessions()
atexit.register(_idle_sessions.close_all)


class Backoff:
    """Waits between reconnects: 0.25 s doubling to 5 s, giving up after about a minute."""

    def __init__(self, url: str, give_up_s: float | None = None) -> None:
        self.url = url
        self.give_up_s = give_up_s
        self.reset()

    def reset(self) -> None:
        """The connection works again: the next trouble starts from the shortest delay."""
        self.delay = RECONNECT_FIRST_DELAY_S
        self.since: float | None = None

    def wait(self, cause: ConnectionLost) -> None:
        """Sleep before the next try, or raise ENOCONNECTION when it is time to give up."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        give_up = RECONNECT_GIVE_UP_S if self.give_up_s is None else self.give_up_s
        if now - self.since + self.delay > give_up:
            raise DCPError(
                "ENOCONNECTION",
                f"cannot reach the scheduler at {self.url} "
                f"(gave up after {give_up:.0f} s): {cause}",
            ) from cause
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, RECONNECT_MAX_DELAY_S)


def with_session[T](
    url: str, identity_key: bytes, action: Callable[[Session], T], give_up_s: float | None = None
) -> T:
    """Run `action` on a fresh session, reconnecting with backoff while the network fails.

    Only for idempotent actions: after a drop, `action` runs again from the start.
    """
    backoff = Backoff(url, give_up_s)
    while True:
        try:
            with Session.open(url, identity_key) as session:
                return action(session)
        except ConnectionLost as exc:
            backoff.wait(exc)


def check_frame_size(frame: Frame) -> None:
    """Refuse, before sending, a request the scheduler would close the socket on."""
    size = len(json.dumps(frame).encode("utf-8"))
    if size > MAX_FRAME_BYTES - FRAME_HEADROOM_BYTES:  # leave room for the request id
        raise DCPError(
            "EINVALID",
            f"a {frame.get('type')} request of {size / 2**20:.1f} MiB is over the scheduler's "
            f"{MAX_FRAME_BYTES // 2**20} MiB frame limit: use a range, smaller values, "
            "or several jobs",
        )


def ignore_events(event: Event) -> None:
    """For requests on a short connection: its events are of no interest."""


def _pass_event(frame: Frame, on_event: EventHandler) -> None:
    """Hand an event to `on_event`; anything else between replies (a late reply to an
    abandoned request, an event of a kind this client does not know) is skipped."""
    if frame.get("type") != "event":
        return
    try:
        event = Event.model_validate(frame)
    except ValidationError:
        return
    on_event(event)


def _parse_reply(frame: Frame, request_type: str) -> Message:
    try:
        reply: Message = client_replies.validate_python(frame)
    except ValidationError:
        raise _unexpected(request_type, frame) from None
    return reply


def _parse_challenge(frame: Frame) -> Challenge:
    if frame.get("type") != "challenge" or not isinstance(frame.get("nonce"), str):
        raise DCPError("EPROTOCOL", f"expected a challenge, got {_short(frame)}")
    if frame.get("version") != PROTOCOL_VERSION:
        raise DCPError(
            "EPROTOCOL",
            f"the scheduler speaks protocol version {frame.get('version')}; "
            f"this dcp speaks {PROTOCOL_VERSION}",
        )
    try:
        return Challenge.model_validate(frame)
    except ValidationError:
        raise DCPError("EPROTOCOL", f"expected a challenge, got {_short(frame)}") from None


def _unexpected(request_type: str, frame: Frame) -> DCPError:
    return DCPError("EPROTOCOL", f"unexpected reply to {request_type}: {_short(frame)}")


def _connect(url: str) -> ClientConnection:
    try:
        return connect(url, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_INCOMING_BYTES)
    except InvalidURI as exc:
        raise DCPError("EINVALID", f"bad scheduler URL {url}: {exc}") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in FATAL_HTTP_STATUSES:
            raise DCPError(
                "ENOCONNECTION", f"the scheduler at {url} refused the websocket (HTTP {status})"
            ) from None
        raise ConnectionLost(f"HTTP {status} from {url}") from exc
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise ConnectionLost(f"cannot connect to {url}: {_describe(exc)}") from exc


def _parse(message: str | bytes) -> Frame | None:
    """A frame as a dict; anything else (binary, bad JSON, not an object) is skipped."""
    if not isinstance(message, str):
        return None
    try:
        frame = json.loads(message)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _short(frame: Frame) -> str:
    text = json.dumps(frame)
    return text if len(text) <= 200 else text[:197] + "..."
