"""The frame handling both sockets share: size limit, JSON, schema, replies as models.

Every frame a consumer sends is a dcp.protocol.messages model, sent by `send_message`;
every frame it receives is parsed into one by the socket's `requests` adapter and handed to
its `on_<type>(request, frame)` method, `frame` being the JSON object as it came.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from pydantic import BaseModel, TypeAdapter, ValidationError

from dcp.protocol import storable
from dcp.protocol.limits import CLOSE_FLOOD, CLOSE_TOO_BIG
from dcp.protocol.messages import Error, describe

from .errors import SchedulerError
from .sizing import ENVELOPE_BYTES

log = logging.getLogger(__name__)
PARSE_ASIDE_CHARS = 256 * 1024  # larger frames are parsed and checked in a worker thread


class RateLimit:
    """A token bucket per connection: `rate` frames a second, bursts of twice that."""

    def __init__(self, rate: float) -> None:
        self.rate, self.burst = rate, 2 * rate
        self.tokens, self.last = self.burst, time.monotonic()
        self.refused = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= self.burst - 1:
            self.refused = 0  # the sender has calmed down: a later burst starts afresh
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        return False


class ProtocolConsumer(AsyncWebsocketConsumer):
    """Parses each frame into its schema and calls `on_<type>(request, frame)`."""

    requests: TypeAdapter[Any]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "rate_limit"):
            self.rate_limit = RateLimit(settings.SOCKET_MESSAGES_PER_SECOND)
        if not self.rate_limit.allow():
            await self.refuse_flood()
            return
        if text_data is None:
            await self.send_error(None, "EINVALID", "binary frames are not part of the protocol")
            return
        if len(text_data) > settings.MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if len(text_data) > PARSE_ASIDE_CHARS:  # the event loop serves the others meanwhile
            raw, problem = await asyncio.to_thread(_parse, text_data)
        else:
            raw, problem = _parse(text_data)
        if raw is None:
            await self.refuse(text_data, None, f"a frame must be one JSON object: {problem}")
            return
        request_id = raw.get("id") if isinstance(raw.get("id"), int | str) else None
        handler = (
            getattr(self, f"on_{raw.get('type')}", None)
            if isinstance(raw.get("type"), str)
            else None
        )
        if handler is None:
            await self.send_error(
                request_id, "EUNKNOWN", f"unknown message type {raw.get('type')!r}"
            )
            return
        try:
            if len(text_data) > PARSE_ASIDE_CHARS:
                message = await asyncio.to_thread(self.requests.validate_python, raw)
            else:
                message = self.requests.validate_python(raw)
        except ValidationError as error:
            await self.refuse(text_data, request_id, describe(error))
            return
        try:
            await handler(message, raw)
        except SchedulerError as error:
            await self.send_error(request_id, error.code, error.message)

    async def refuse(self, text: str, request_id: Any, why: str) -> None:
        """Answer a frame that breaks the protocol with EINVALID, and log one line."""
        log.warning("%s refused a frame: %s", type(self).__name__, why[:300])
        await self.send_error(request_id, "EINVALID", why)

    async def refuse_flood(self) -> None:
        """Say so once; a sender that keeps flooding is disconnected."""
        limit = settings.SOCKET_MESSAGES_PER_SECOND
        if self.rate_limit.refused == 1:
            await self.send_error(None, "ERATELIMIT", f"more than {limit} messages a second")
        elif self.rate_limit.refused > self.rate_limit.burst:
            await self.close(code=CLOSE_FLOOD)

    async def send_message(self, message: BaseModel) -> None:
        """Send one protocol message as one JSON text frame.

        Values are written as what they are (`serialize_as_any`): a message built with
        `model_construct` from trusted rows may hold plain dicts and tuples where its model
        names a part, which saves a model object per slice on the hot path.
        """
        text = message.model_dump_json(serialize_as_any=True)
        if len(text) > settings.MAX_FRAME_BYTES + ENVELOPE_BYTES:
            # Pages and tasks are cut to fit (sizing.frame_budget), so this is a bug: say so
            # rather than send a frame the other end would close the socket over.
            kind = getattr(message, "type", "?")
            log.error("a %s frame of %d bytes was not sent", kind, len(text))
            why = f"the {kind} reply was too large to send"
            refusal = Error(id=getattr(message, "id", None), code="ETOOBIG", message=why)
            text = refusal.model_dump_json()
        await self.send(text_data=text)

    async def send_error(self, request_id: Any, code: str, message: str) -> None:
        await self.send_message(Error.model_construct(id=request_id, code=code, message=message))


def _parse(text: str) -> tuple[dict[str, Any] | None, str]:
    """The frame's JSON object, or None and why not: NaN, Infinity, NUL characters, lone
    surrogates and deep nesting are refused (dcp.protocol.storable), as no database stores them."""
    try:
        value = storable.loads(text)
    except RecursionError:
        return None, f"values are nested more than {storable.MAX_DEPTH} deep"
    except ValueError as error:
        return None, str(error)
    if not isinstance(value, dict):
        return None, "a frame must be one JSON object"
    return value, ""
