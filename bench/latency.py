"""The round trip of a 1-slice job, p50 and p99 over BENCH_LATENCY_JOBS jobs, broken into parts.

One synthetic worker (its own process, one core) that stamps when it received each task and
when its result was ready to send, and the Python client, which stamps its own job's events.
Both run on this machine and stamp with `time.monotonic()` (CLOCK_MONOTONIC on Linux, one
clock for every process), so the stamps of both sides are on one time line. The parts, which
add up to the total (`exec()` called → `exec()` returned):

| part | from → to |
| --- | --- |
| `socket` | `exec()` called → `readystatechange` "deploying": the deploy frame built and its |
| | cheque signed, the socket taken from the last job (or opened and signed in) |
| `deploy` | "deploying" (deploy sent) → `accepted` |
| `dispatch` | `accepted` → the worker received the task |
| `compute` | the worker received the task → its result frame is built (then sent at once) |
| `result` | the result frame built → the client's `result` event |
| `complete` | the `result` event → `exec()` returned (the `complete` event just before) |

The scheduler wakes workers before it answers a deploy, so a task can reach the worker before
`accepted` reaches the client: `dispatch` is then negative, and `deploy` holds the overlap.

The client keeps its signed-in socket for the next job, so `socket` is near zero on every job
but the first; `fresh_socket_*` is measured apart, on BENCH_LATENCY_FRESH jobs that each start
without the kept socket. `first_job_ms` is this process's first job: it also reads the keystores
(scrypt) and opens the socket. `others_cpu_pct` is the share of the machine's CPU that other
processes took during the measured jobs (bench/efficiency.py). On PostgreSQL + Redis the line
also says how many database transactions each measured job cost. Prints one JSON line per
backend (bench/harness.py).

The peer, measured in the same run: Dask distributed (`LocalCluster`, 2 worker processes with
1 thread each) running the same 1-item function BENCH_LATENCY_JOBS times, each a
`client.submit(...).result()` round trip (`dask_p50_ms`, `dask_p99_ms`, and our p50 over its,
`ratio_vs_dask_p50`). A Dask task has no deploy, payment or results stored: the ratio is what
those cost on top of a scheduler round trip.

    python -m bench.latency                   # the benchmark
    python -m bench.latency worker --url URL --log PATH   # its worker (started by it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import dcp
from bench.efficiency import OthersCpu, load_average, wait_for_quiet_machine
from bench.harness import (
    EMBEDDED,
    PASSWORD,
    POSTGRES_REDIS,
    Portal,
    backends,
    start_portal,
)
from bench.throughput import quiet_exec
from dcp.client import connection
from dcp.protocol import messages as wire
from testkit.livesite import REPO
from testkit.synthetic_worker import SyntheticWorker, log_in

JOBS = int(os.environ.get("BENCH_LATENCY_JOBS", "100"))
FRESH_JOBS = int(os.environ.get("BENCH_LATENCY_FRESH", "10"))
WARM_UP_JOBS = 5
WORK = "def work(x):\n    return x\n"
PARTS = ("socket", "deploy", "dispatch", "compute", "result", "complete")
TARGET_P50_MS = {EMBEDDED: 8.0, POSTGRES_REDIS: 12.0}  # the project's stated targets
STATS_DELAY_S = 11.0


class StampingWorker(SyntheticWorker):
    """A synthetic worker that writes, for each task, when it arrived and when its result
    frame was ready: one JSON line per task, `{"job", "received", "sent"}` (monotonic s)."""

    def __init__(self, url: str, session: str, log: TextIO) -> None:
        super().__init__(url, session)
        self.log = log

    def compute(self, task: dict[str, Any]) -> wire.Results:
        received = time.monotonic()
        results = super().compute(task)
        stamps = {"job": task["job"]["id"], "received": received, "sent": time.monotonic()}
        self.log.write(json.dumps(stamps) + "\n")
        self.log.flush()
        return results


def start_stamping_worker(portal: Portal, log: Path) -> subprocess.Popen[bytes]:
    """One StampingWorker in its own process, signed in as the volunteer, stamping to `log`."""
    command = [sys.executable, "-m", "bench.latency", "worker", "--url", portal.site.url]
    return subprocess.Popen([*command, "--log", str(log)], cwd=REPO)


def worker_main(url: str, log_path: str) -> None:
    session = log_in(url, "worker@example.com", PASSWORD)
    with open(log_path, "a", encoding="utf-8") as log:
        asyncio.run(StampingWorker(url, session, log).run_forever())


def timed_job(datum: int) -> dict[str, Any]:
    """Run one 1-slice job; the client's stamps (monotonic seconds) and the job's id."""
    job = dcp.compute_for([datum], WORK)
    stamps: dict[str, Any] = {}

    def stamp(name: str) -> Any:
        return lambda data: stamps.setdefault(name, time.monotonic())

    job.on("readystatechange", lambda state: stamps.setdefault(state, time.monotonic()))
    job.on("accepted", lambda data: stamps.update(accepted=time.monotonic(), job=data["job"]))
    job.on("result", stamp("result"))
    job.on("complete", stamp("complete_event"))
    stamps["start"] = time.monotonic()
    results = quiet_exec(job, "0")
    stamps["end"] = time.monotonic()
    assert results.values() == [datum], "wrong result"
    return stamps


def parts_of(client: dict[str, Any], worker: dict[str, float]) -> dict[str, float]:
    """The parts of one job in milliseconds, and its total."""
    points = [
        client["start"],
        client["deploying"],
        client["accepted"],
        worker["received"],
        worker["sent"],
        client["result"],
        client["end"],
    ]
    parts = {name: (points[i + 1] - points[i]) * 1000 for i, name in enumerate(PARTS)}
    return parts | {"total": (client["end"] - client["start"]) * 1000}


def read_stamps(log: Path) -> dict[str, dict[str, float]]:
    """The worker's stamps by job (a job's first task, should it have been handed out twice)."""
    stamps: dict[str, dict[str, float]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        stamps.setdefault(entry["job"], entry)
    return stamps


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summary(prefix: str, jobs: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, float]:
    """p50 and p99 (ms) of each of `names` over `jobs`, keyed `<prefix><name>_p50_ms`."""
    figures = {}
    for name in names:
        values = [job[name] for job in jobs]
        figures[f"{prefix}{name}_p50_ms"] = round(percentile(values, 0.5), 2)
        figures[f"{prefix}{name}_p99_ms"] = round(percentile(values, 0.99), 2)
    return figures


def run_jobs(count: int, first: int, log: Path, *, fresh: bool) -> list[dict[str, float]]:
    """`count` timed jobs, their parts; `fresh`: each without the socket the last one kept."""
    clients = []
    for datum in range(first, first + count):
        if fresh:
            connection._idle_sessions.close_all()  # the next exec() opens and signs in anew
        clients.append(timed_job(datum))
    workers = read_stamps(log)
    return [parts_of(client, workers[client["job"]]) for client in clients]


def service_counters(portal: Portal) -> dict[str, int]:
    """On PostgreSQL + Redis: the transactions of the portal's database so far ({} on the
    embedded backend). PostgreSQL publishes a connection's counts up to 10 s after its last
    statement, so this waits STATS_DELAY_S first. (Redis counts commands for the whole server
    only, which other users of it would blur, so they are not counted.)"""
    if portal.backend != POSTGRES_REDIS:
        return {}
    import psycopg

    time.sleep(STATS_DELAY_S)
    name = urlsplit(portal.database).path.strip("/")
    query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
    with psycopg.connect(portal.database, autocommit=True) as connection:
        row = connection.execute(query, (name,)).fetchone()
    return {"pg_transactions": int(row[0]) if row else 0}


def per_job(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """The counters' growth per measured job (each reading adds a transaction, and the idle
    poller about one a second)."""
    return {f"{name}_per_job": round((after[name] - before[name]) / JOBS, 2) for name in before}


def measure(portal: Portal, log: Path) -> dict[str, Any]:
    """Warm-up jobs, the measured jobs, then the jobs on fresh sockets."""
    first = run_jobs(1, 0, log, fresh=False)[0]  # this process's first job: a fresh socket
    run_jobs(WARM_UP_JOBS, 1, log, fresh=False)
    before = service_counters(portal)
    others = OthersCpu()
    jobs = run_jobs(JOBS, 100, log, fresh=False)
    others_pct = others.pct()
    counted = per_job(before, service_counters(portal))
    fresh = run_jobs(FRESH_JOBS, 100 + JOBS, log, fresh=True)
    figures: dict[str, Any] = {"first_job_ms": round(first["total"], 2), **counted}
    figures["others_cpu_pct"] = others_pct
    figures.update(summary("", jobs, ("total", *PARTS)))
    figures.update(summary("fresh_", fresh, ("total", "socket")))
    return figures


def backend_line(backend: str) -> dict[str, Any]:
    """The figures on a fresh portal on `backend`, with one stamping worker."""
    figures: dict[str, Any] = {"benchmark": "latency", "backend": backend, "jobs": JOBS}
    figures.update(fresh_jobs=FRESH_JOBS, load_avg_before=wait_for_quiet_machine())
    portal = start_portal(backend=backend)
    dcp.init(portal.site.url)
    log = Path(tempfile.mkdtemp(prefix="dcp-latency-")) / "worker.jsonl"
    worker = start_stamping_worker(portal, log)
    try:
        time.sleep(2)  # let the worker sign in and connect
        figures.update(measure(portal, log))
    finally:
        worker.kill()
        worker.wait()
        connection._idle_sessions.close_all()
        portal.stop()
    figures["load_avg_after"] = load_average()
    figures["target_p50_ms"] = TARGET_P50_MS.get(backend)
    figures["target_met"] = figures["total_p50_ms"] <= TARGET_P50_MS.get(backend, 0)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", choices=["benchmark", "worker"], default="benchmark")
    parser.add_argument("--url", help="the portal (worker only)")
    parser.add_argument("--log", help="where the worker writes its stamps (worker only)")
    options = parser.parse_args()
    if options.role == "worker":
        if not options.url or not options.log:
            parser.error("the worker needs --url and --log")
        worker_main(options.url, options.log)
        return
    peer = dask_latency()
    for backend in backends():
        line = backend_line(backend)
        line.update(peer, ratio_vs_dask_p50=round(line["total_p50_ms"] / peer["dask_p50_ms"], 2))
        print(json.dumps(line), flush=True)


def one_more(x: int) -> int:
    return x + 1


def dask_latency() -> dict[str, float]:
    """The peer's 1-task round trip: `client.submit(one_more, n).result()`, p50 and p99."""
    import logging

    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        for n in range(WARM_UP_JOBS):
            client.submit(one_more, n, pure=False).result()
        times = []
        for n in range(JOBS):
            started = time.perf_counter()
            assert client.submit(one_more, n, pure=False).result() == n + 1
            times.append((time.perf_counter() - started) * 1000)
    return {
        "dask_p50_ms": round(percentile(times, 0.5), 2),
        "dask_p99_ms": round(percentile(times, 0.99), 2),
    }


if __name__ == "__main__":
    main()
