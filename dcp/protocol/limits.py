"""The numbers both ends of a socket agree on: the protocol version and the size limits."""

from __future__ import annotations

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024  # a larger frame closes the socket (1009)
FRAME_HEADROOM_BYTES = 64  # what a frame's envelope (type, id) may add to its payload
MAX_CONSOLE_CHARS = 10_000  # one console line, as a worker forwards it
MAX_RESULTS_PER_FETCH = 10_000  # results a single `results` request returns
MAX_SLICES_PER_BATCH = 100_000  # values one `add_slices` request carries
MAX_SOURCE_CHARS = 1_000_000  # a work function's source
