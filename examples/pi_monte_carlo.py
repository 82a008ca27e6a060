"""A Monte Carlo estimate of pi with a grouped range: 10 slices of 10 seeds each.

    DCP_SCHEDULER_URL=http://127.0.0.1:8000 DCP_HOMEDIR=$HOME python examples/pi_monte_carlo.py

`dcp.Range(1, 100, group=10)` gives slice n the list of seeds 10n-9 .. 10n. For each seed the
work function throws `samples` random points into the unit square and counts those inside the
quarter circle; it returns [inside, thrown]. pi is about 4 * inside / thrown. `--local` runs it
on this machine instead (no scheduler, no credits).
"""

from __future__ import annotations

import sys

import dcp

SAMPLES_PER_SEED = 20_000


def work(seeds, samples):
    import random

    inside = 0
    for seed in seeds:
        rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        for _ in range(samples):
            x, y = rng.random(), rng.random()
            inside += x * x + y * y <= 1.0
        progress()  # noqa: F821 - a global of the worker's sandbox
    return [inside, samples * len(seeds)]


def main() -> None:
    dcp.init()
    job = dcp.compute_for(dcp.Range(1, 100, group=10), work, args=[SAMPLES_PER_SEED])
    job.public = {"name": "pi by Monte Carlo"}
    if "--local" in sys.argv:
        results = job.local_exec(cores=2)
    else:
        results = job.exec(slice_payment_offer="0.001")
    inside = sum(count for count, _ in results.values())
    thrown = sum(total for _, total in results.values())
    print(f"pi is about {4 * inside / thrown:.5f} ({thrown} points in {len(results)} slices)")


if __name__ == "__main__":
    main()
