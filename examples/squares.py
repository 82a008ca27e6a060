"""Squares of 1..10, computed by the network's Worker tabs.

    DCP_SCHEDULER_URL=http://127.0.0.1:8000 DCP_HOMEDIR=$HOME python examples/squares.py

The keystores are read from $DCP_HOMEDIR/.dcp/ (id.keystore and default.keystore). With
`--local` the job runs on this machine instead, without the scheduler and without credits.
"""

from __future__ import annotations

import sys

import dcp


def work(x):
    progress()  # noqa: F821 - a global of the worker's sandbox
    return x * x


def main() -> None:
    dcp.init()  # DCP_SCHEDULER_URL, else http://127.0.0.1:8000
    job = dcp.compute_for(1, 10, work)
    job.public = {"name": "squares of 1..10"}
    job.on("accepted", lambda event: print("deployed job", event["job"], file=sys.stderr))
    local = "--local" in sys.argv
    results = job.local_exec() if local else job.exec(slice_payment_offer="0.001")
    print(results.values())


if __name__ == "__main__":
    main()
