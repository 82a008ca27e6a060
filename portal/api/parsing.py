"""Request bodies as strict JSON: what the database can store, the same on every backend
(the protocol's rule, dcp/protocol/storable.py, which the websockets apply too); a body that
breaks it is refused with 400.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from dcp.protocol import storable


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return storable.loads(request.body)  # type: ignore[no-any-return]
