"""Scheduler throughput beside Dask, latency, a million-slice deploy, and idle workers.

Prints one JSON line per backend: the embedded defaults (SQLite, in-memory channel layer) and,
when they answer, PostgreSQL + Redis (bench/harness.py). Everything runs on this machine: the
portal (daphne, production settings), synthetic workers speaking the real worker protocol but
running the work function natively (so the figure is the scheduler's, not Pyodide's), the Python
client, and Dask distributed on the same inputs, one task per item and in batches the size of
our tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any

import dcp
from bench.harness import PeakRSS, Portal, backends, start_portal, start_workers
from portal.settings import MAX_TASK_SLICES

SLICES = int(os.environ.get("BENCH_SLICES", "100000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
IDLE_WORKERS = int(os.environ.get("BENCH_IDLE_WORKERS", "2000"))
LATENCY_JOBS = int(os.environ.get("BENCH_LATENCY_JOBS", "40"))


def quiet_exec(job: Any, offer: str) -> Any:
    """exec() without a progress bar (the option exists from the full Compute API on)."""
    import inspect

    if "progress_bar" in inspect.signature(job.exec).parameters:
        return job.exec(slice_payment_offer=offer, progress_bar=False)
    return job.exec(slice_payment_offer=offer)


def increment(x: int) -> int:
    return x + 1


def scheduler_throughput(portal: Portal) -> dict[str, float]:
    workers = start_workers(portal.site, WORKERS)
    try:
        time.sleep(2)  # let the workers sign in and connect
        job = dcp.compute_for(1, SLICES, "def work(x):\n    return x + 1\n")
        started = time.perf_counter()
        results = quiet_exec(job, "0.000001")
        elapsed = time.perf_counter() - started
        assert results.values()[:3] == [2, 3, 4] and len(results) == SLICES
        latencies = []
        for _ in range(LATENCY_JOBS):
            one = dcp.compute_for([1], "def work(x):\n    return x\n")
            tick = time.perf_counter()
            quiet_exec(one, "0")
            latencies.append((time.perf_counter() - tick) * 1000)
    finally:
        workers.kill()
        workers.wait()
    latencies.sort()
    return {
        "slices_per_s": round(SLICES / elapsed, 1),
        "job_seconds": round(elapsed, 2),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
    }


def increment_all(chunk: range) -> list[int]:
    return [increment(x) for x in chunk]


def dask_throughput() -> dict[str, float]:
    """Dask distributed on the same inputs, twice: `client.map` of one task per item (what
    its docs show), and `client.map` over chunks as large as our scheduler's tasks grow to with
    trivial slices (MAX_TASK_SLICES), so that the second ratio shows scheduling, not batching."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(increment, range(100)))  # warm up
        started = time.perf_counter()
        values = client.gather(client.map(increment, range(SLICES)))
        single = time.perf_counter() - started
        chunks = [
            range(n, min(n + MAX_TASK_SLICES, SLICES)) for n in range(0, SLICES, MAX_TASK_SLICES)
        ]
        started = time.perf_counter()
        batched = [x for part in client.gather(client.map(increment_all, chunks)) for x in part]
        chunked = time.perf_counter() - started
    assert values[:3] == [1, 2, 3] and batched == values
    return {
        "dask_tasks_per_s": round(SLICES / single, 1),
        "dask_batch_items": MAX_TASK_SLICES,
        "dask_batched_items_per_s": round(SLICES / chunked, 1),
    }


def ray_throughput() -> dict[str, Any]:
    """Ray (where it installs) on the same inputs, the same two ways: one remote task per item,
    and one per chunk of MAX_TASK_SLICES items; a local Ray of 2 CPUs."""
    try:
        import ray
    except ImportError:
        return {"ray": "not installed (pip install ray)"}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        one = ray.remote(increment)
        many = ray.remote(increment_all)
        ray.get([one.remote(x) for x in range(100)])  # warm up
        started = time.perf_counter()
        values = ray.get([one.remote(x) for x in range(SLICES)])
        single = time.perf_counter() - started
        chunks = [
            range(n, min(n + MAX_TASK_SLICES, SLICES)) for n in range(0, SLICES, MAX_TASK_SLICES)
        ]
        started = time.perf_counter()
        batched = [x for part in ray.get([many.remote(c) for c in chunks]) for x in part]
        chunked = time.perf_counter() - started
    finally:
        ray.shutdown()
    assert values[:3] == [1, 2, 3] and batched == values
    return {
        "ray_tasks_per_s": round(SLICES / single, 1),
        "ray_batched_items_per_s": round(SLICES / chunked, 1),
    }


def deploy_million(portal: Portal) -> float:
    job = dcp.compute_for(1, 1_000_000, "def work(x):\n    return x\n")
    accepted: dict[str, float] = {}
    started = time.perf_counter()

    def on_accepted(event: Any) -> None:
        accepted["at"] = time.perf_counter()
        job.cancel("benchmark: deploy only")

    job.on("accepted", on_accepted)
    try:
        quiet_exec(job, "0")
    except dcp.DCPError as error:
        assert error.code == "ECANCELLED", error
    return round(accepted["at"] - started, 3)


async def hold_idle_workers(url: str, session: str, count: int) -> list[Any]:
    import websockets

    headers = {"Cookie": f"sessionid={session}", "Origin": url}
    sockets = []
    for _ in range(count):
        socket = await websockets.connect(
            url.replace("http", "ws", 1) + "/ws/worker/",
            additional_headers=headers,
            ping_interval=None,
        )
        await socket.send(json.dumps({"type": "hello", "id": 1, "cores": 1}))
        await socket.send(json.dumps({"type": "ready", "capacity": 1}))
        sockets.append(socket)
    for socket in sockets:  # every one was welcomed and is waiting for work
        while json.loads(await socket.recv())["type"] != "waiting":
            pass
    return sockets


def idle_workers(portal: Portal, rss: PeakRSS) -> dict[str, float]:
    from testkit.synthetic_worker import log_in

    session = log_in(portal.site.url, "worker@example.com", "benchmark password 42")

    async def run() -> dict[str, float]:
        sockets = await hold_idle_workers(portal.site.url, session, IDLE_WORKERS)
        await asyncio.sleep(5)  # a couple of idle polls
        held = {"idle_workers_held": len(sockets), "idle_rss_mb": round(rss.now_mb, 1)}
        for socket in sockets:
            await socket.close()
        return held

    return asyncio.run(run())


def scheduler_figures(backend: str) -> dict[str, Any]:
    """Every scheduler figure, on a fresh portal on `backend`."""
    portal = start_portal(backend=backend)
    dcp.init(portal.site.url)
    assert portal.site.process is not None
    rss = PeakRSS(portal.site.process.pid)
    figures: dict[str, Any] = {"benchmark": "throughput", "backend": backend}
    figures.update(slices=SLICES, workers=WORKERS)
    try:
        figures.update(scheduler_throughput(portal))
        figures["deploy_1m_range_s"] = deploy_million(portal)
        figures["server_peak_rss_mb"] = round(rss.peak_mb, 1)
        figures.update(idle_workers(portal, rss))
    finally:
        rss.stop()
        portal.stop()
    return figures


def main() -> None:
    """One line per backend, each with the same Dask and Ray runs beside it (measured once,
    first)."""
    peers = dask_throughput() | ray_throughput()
    for backend in backends():
        figures = scheduler_figures(backend) | peers
        ours = figures["slices_per_s"]
        figures["ratio_vs_dask"] = round(ours / peers["dask_tasks_per_s"], 2)
        figures["ratio_vs_dask_batched"] = round(ours / peers["dask_batched_items_per_s"], 2)
        if "ray_tasks_per_s" in peers:
            figures["ratio_vs_ray"] = round(ours / peers["ray_tasks_per_s"], 2)
            figures["ratio_vs_ray_batched"] = round(ours / peers["ray_batched_items_per_s"], 2)
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
