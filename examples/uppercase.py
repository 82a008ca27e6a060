"""DCP's seed program: every letter of the alphabet made uppercase by a worker, one a slice.

    DCP_SCHEDULER_URL=http://127.0.0.1:8000 DCP_HOMEDIR=$HOME python examples/uppercase.py

`--local` runs it on this machine instead (no scheduler, no credits).
"""

from __future__ import annotations

import string
import sys

import dcp


def work(letter):
    progress()  # noqa: F821 - a global of the worker's sandbox
    return letter.upper()


def main() -> None:
    dcp.init()
    job = dcp.compute_for(list(string.ascii_lowercase), work)
    job.public = {"name": "uppercase letters"}
    job.on("result", lambda event: print("slice", event["slice"], "->", event["value"]))
    local = "--local" in sys.argv
    results = job.local_exec() if local else job.exec(slice_payment_offer="0.001")
    print("".join(results.values()))


if __name__ == "__main__":
    main()
