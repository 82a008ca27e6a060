"""The numbers both ends of a socket agree on: the protocol version and the size limits."""

from __future__ import annotations

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024  # a larger frame closes the socket (CLOSE_TOO_BIG)
FRAME_HEADROOM_BYTES = 64  # what a frame's envelope (type, id) may add to its payload
MAX_CONSOLE_CHARS = 10_000  # one console line, as a worker forwards it
MAX_RESULTS_PER_FETCH = 10_000  # results a single `results` request returns
MAX_SLICES_PER_BATCH = 100_000  # values one `add_slices` request carries
MAX_SOURCE_CHARS = 1_000_000  # a work function's source
MAX_WORKER_JOBS = 100  # jobs one worker's hello may limit it to

# Close codes of the scheduler's sockets. An application may close only with 1000 or 3000-4999
# (servers and browsers refuse the others), so the standard 1008 and 1009 are given as 4008 and
# 4009, and HTTP's 401 as 4401.
CLOSE_FLOOD = 4008  # told ERATELIMIT, and kept flooding
CLOSE_TOO_BIG = 4009  # a frame over MAX_FRAME_BYTES
CLOSE_UNAUTHENTICATED = 4401  # a worker socket without a signed-in session

# What a worker gives one job's sandbox: its WebAssembly memory (all of a Python job's data) may
# grow to this and no further; a slice that needs more fails with OutOfMemory.
MAX_SANDBOX_MEMORY_BYTES = 1024 * 1024 * 1024
