"""Serve the portal with daphne, its websocket limits taken from the settings.

    python -m portal.serve -b 127.0.0.1 -p 8000      # other daphne options pass through

daphne refuses websocket messages over 1 MiB unless told otherwise, and drops the connection
without a word; the protocol allows frames of MAX_FRAME_BYTES (4 MiB, dcp/protocol/limits.py,
lowered with the MAX_FRAME_BYTES setting). So the transport here takes a little more than
that, and the scheduler's own check answers a frame over the limit with close code 4009, the
same on every server that runs the portal this way (`make run`, the tests, the benchmarks).
"""

from __future__ import annotations

import os
import sys

TRANSPORT_HEADROOM_BYTES = 64 * 1024  # beyond the protocol's limit, so its own check answers


def daphne_arguments(argv: list[str]) -> list[str]:
    """daphne's command line: the websocket limits, then `argv`, then the application."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.conf import settings

    limit = str(settings.MAX_FRAME_BYTES + TRANSPORT_HEADROOM_BYTES)
    sizes = ["--websocket-max-message-size", limit, "--websocket-max-frame-size", limit]
    return [*sizes, *argv, "portal.asgi:application"]


def main() -> None:
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(daphne_arguments(sys.argv[1:]))


if __name__ == "__main__":
    main()
