"""Scale: idle workers over two processes, N processes behind HAProxy, and what a slice costs.

Prints one JSON line. The parts run on PostgreSQL + Redis (bench/harness.py: a fresh database
each time, Redis database 9), the embedded comparison aside; when those do not answer, the line
says so and nothing runs. BENCH_SCALE_PARTS picks parts (idle,idle_embedded,processes,costs).

- `idle`: BENCH_SCALE_IDLE_WORKERS (10,000) idle worker connections, signed in, each having
  said hello and ready and been told `waiting`, spread over two daphne processes; the resident
  memory of each process (psutil) and in all; then one `work.available` wake-up of them all, as
  a deploy sends it, and the CPU and time the processes need to settle again; then a job that
  none of them can take (it needs WebGPU), and what the idle polls cost beside it. Beside it,
  `idle_embedded`: one embedded process (SQLite, in-memory layer) filled with idle workers
  until it reaches the same memory budget (BENCH_SCALE_BUDGET_MB, 1536), the limit of open
  files or BENCH_SCALE_EMBEDDED_MAX (10,000); with the memory each worker took, how many the
  budget would hold.
- `processes`: 1, 2 and 4 daphne processes (BENCH_SCALE_PROCESSES) behind HAProxy in HTTP mode,
  round robin; synthetic workers and client processes reach them only through it. Trivial
  slices' throughput, each process's share of the sockets and CPU, and a check of the
  scheduler's tables: every slice handed out once and done once, with the right value, paid
  once. Skipped when `haproxy` is not on PATH.
- `costs`: a worker's hello, a claim, a result batch, a status, a deploy and an idle poll, each
  timed (median) with its SQL queries and channel-layer group sends counted, in a process of
  its own with the portal's settings on the same database (the inputs of docs/scaling.md).

The workers' sockets are all held by this one process (asyncio), so it raises its limit of open
files to the hard limit first; the daphne processes it starts inherit that limit.

    python -m bench.scale
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.harness import (
    EMBEDDED,
    PASSWORD,
    PG_URL,
    POSTGRES_REDIS,
    REDIS_URL,
    PeakRSS,
    Portal,
    backends,
    start_portal,
    start_workers,
)
from bench.throughput import hold_idle_workers, quiet_exec
from testkit.livesite import REPO, LiveSite, free_port

IDLE_WORKERS = int(os.environ.get("BENCH_SCALE_IDLE_WORKERS", "10000"))
IDLE_PROCESSES = 2
BUDGET_MB = float(os.environ.get("BENCH_SCALE_BUDGET_MB", "1536"))
# the embedded process is filled up to this many (or the budget, or open files): each worker
# costs it a few tens of KiB, so the budget would hold more than open files allow, and the
# count it would hold is estimated from the memory measured per worker
EMBEDDED_MAX = int(os.environ.get("BENCH_SCALE_EMBEDDED_MAX", "10000"))
# handshakes in flight at once: more only queue up in the server, and one still queued after
# daphne's 5 s for the application to accept is refused
CONNECT_LANES = int(os.environ.get("BENCH_SCALE_LANES", "20"))
MAX_FAILURES = 2000  # failed connection tries after which a part stops opening more
PROCESS_COUNTS = [int(n) for n in os.environ.get("BENCH_SCALE_PROCESSES", "1,2,4").split(",")]
SLICES = int(os.environ.get("BENCH_SCALE_SLICES", "20000"))  # per process count, all clients
WORKERS = int(os.environ.get("BENCH_SCALE_WORKERS", "8"))
CLIENTS = int(os.environ.get("BENCH_SCALE_CLIENTS", "2"))
COST_REPEAT = int(os.environ.get("BENCH_SCALE_COST_REPEAT", "100"))
COST_TASK_SIZES = (1, 100, 2000)  # slices a task: slow slices, middling, MAX_TASK_SLICES

TARGET_WORKERS, TARGET_MB = 10_000, 1536  # the target the project states for two processes
MAX_LOAD = 1.5  # one-minute load average above which a part waits before it measures
LOAD_TRIES = int(os.environ.get("BENCH_SCALE_LOAD_TRIES", "10"))  # waits of LOAD_PAUSE_S
LOAD_PAUSE_S = 30
UNSERVABLE_S = 20  # how long the idle workers are watched beside a job none of them can take
STATS_DELAY_S = 11  # PostgreSQL publishes a backend's counts within 10 s of it idling
SETTLE_S = 6  # idle workers sit through this many seconds (three idle polls) before measuring
FD_MARGIN = 300  # open files kept for everything but the workers' sockets
QUIET_CPU_S = 0.05  # daphne CPU seconds in QUIET_WINDOW_S under which a process is settled
QUIET_WINDOW_S = 0.5
CLIENT_TIMEOUT_S = 300
OFFER = "0.000001"
WORK = "def work(x):\n    return x + 1\n"
WORKERS_EMAIL = "worker@example.com"
HAPROXY_CONFIG = """global
    maxconn {maxconn}
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend portal
    bind 127.0.0.1:{port}
    default_backend daphne
backend daphne
    balance roundrobin
{servers}
"""


# --- the machine ------------------------------------------------------------------------------


def raise_file_limit() -> int:
    """Raise this process's limit of open files to the hard limit; returns the new limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return limit


def wait_for_quiet() -> float:
    """The one-minute load average, once it is at most MAX_LOAD (or after LOAD_TRIES waits:
    the figure in the line then says the machine was busy)."""
    for _ in range(LOAD_TRIES):
        load = os.getloadavg()[0]
        if load <= MAX_LOAD:
            return round(load, 2)
        time.sleep(LOAD_PAUSE_S)
    return round(os.getloadavg()[0], 2)


def more_processes(portal: Portal, count: int, sites: list[LiveSite]) -> None:
    """Start `count` more daphne processes on the portal's database and Redis, each on its own
    port, each added to `sites` once it listens (so that a failed start still stops the rest)."""
    for _ in range(count):
        site = LiveSite(portal.home.parent, debug=False, extra_env=portal.site.extra_env)
        site.log_path = site.workdir / f"daphne-{site.port}.log"
        site.access_log = site.workdir / f"access-{site.port}.log"
        site.start()
        sites.append(site)


def stop_all(sites: list[LiveSite]) -> None:
    for site in sites:
        site.stop(kill=True)


def service_port(url: str, default: int) -> int:
    return urlsplit(url).port or default


def process_figures(site: LiveSite) -> dict[str, Any]:
    """A daphne process's resident memory, threads, and connections to PostgreSQL and Redis."""
    assert site.process is not None
    process = psutil.Process(site.process.pid)
    peers = Counter(c.raddr.port for c in process.net_connections(kind="tcp") if c.raddr)
    return {
        "rss_mb": round(process.memory_info().rss / 2**20, 1),
        "threads": process.num_threads(),
        "db_connections": peers[service_port(PG_URL, 5432)],
        "redis_connections": peers[service_port(REDIS_URL, 6379)],
    }


def cpu_seconds(sites: list[LiveSite]) -> float:
    total = 0.0
    for site in sites:
        assert site.process is not None
        times = psutil.Process(site.process.pid).cpu_times()
        total += times.user + times.system
    return total


# --- part A: idle workers ---------------------------------------------------------------------


async def open_idle(
    urls: list[str], session: str, count: int, enough: Callable[[], bool] = lambda: False
) -> tuple[list[Any], int]:
    """`count` idle workers, round robin over `urls`, CONNECT_LANES handshakes in flight, until
    `enough()`; one that fails is tried again, as a worker would (at most MAX_FAILURES in
    all). Returns the sockets and how many tries failed."""
    from websockets.exceptions import WebSocketException

    sockets: list[Any] = []
    targets = itertools.cycle(urls)
    pending, failed = count, 0

    async def lane() -> None:
        nonlocal pending, failed
        while pending > 0 and failed < MAX_FAILURES and not enough():
            pending -= 1
            try:
                sockets.extend(await hold_idle_workers(next(targets), session, 1))
            except (OSError, TimeoutError, WebSocketException):
                pending, failed = pending + 1, failed + 1

    await asyncio.gather(*(lane() for _ in range(CONNECT_LANES)))
    return sockets, failed


def still_open(sockets: list[Any]) -> int:
    from websockets.protocol import State

    return sum(1 for socket in sockets if socket.state is State.OPEN)


def server_exceptions(sites: list[LiveSite]) -> int:
    """Exceptions that ended a connection's application, from the daphne processes' logs."""
    return sum(site.log_path.read_text().count("Exception inside application") for site in sites)


def abort(sockets: list[Any]) -> None:
    """Drop the workers' connections at once, without closing handshakes."""
    for socket in sockets:
        socket.transport.abort()


def idle_over_processes(file_limit: int) -> dict[str, Any]:
    """IDLE_WORKERS idle workers (as many as open files allow) over IDLE_PROCESSES daphne
    processes on PostgreSQL + Redis."""
    from testkit.synthetic_worker import log_in

    load = wait_for_quiet()
    portal = start_portal(backend=POSTGRES_REDIS)
    sites = [portal.site]
    try:
        more_processes(portal, IDLE_PROCESSES - 1, sites)
        session = log_in(portal.site.url, WORKERS_EMAIL, PASSWORD)
        count = min(IDLE_WORKERS, file_limit - FD_MARGIN)
        figures = asyncio.run(hold_and_measure(portal, sites, session, count))
    finally:
        stop_all(sites)
        portal.stop()
    return {"load_avg_1m": load, **figures}


async def hold_and_measure(
    portal: Portal, sites: list[LiveSite], session: str, count: int
) -> dict[str, Any]:
    empty_mb = sum(process_figures(site)["rss_mb"] for site in sites)
    started = time.perf_counter()
    sockets, failed = await open_idle([site.url for site in sites], session, count)
    connect_s = time.perf_counter() - started
    await asyncio.sleep(SETTLE_S)
    still = still_open(sockets)
    each = [process_figures(site) for site in sites]
    total = sum(figures["rss_mb"] for figures in each)
    figures: dict[str, Any] = {
        "workers": len(sockets),
        "connect_failures": failed,
        "still_connected": still,
        "processes": len(sites),
        "connect_per_s": round(len(sockets) / connect_s, 1),
        "per_process": each,
        "total_rss_mb": round(total, 1),
        "total_rss_before_mb": round(empty_mb, 1),
        "kib_per_worker": round((total - empty_mb) * 1024 / max(len(sockets), 1), 1),
        "target": "10,000 idle workers over two processes under 1.5 GiB in all",
        "memory_target_met": len(sockets) >= TARGET_WORKERS and total < TARGET_MB,
        # and every one of them still connected when the memory was measured
        "target_met": still >= TARGET_WORKERS and total < TARGET_MB,
        "client_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }
    figures.update(await wake_all(portal, sites))
    figures["still_connected_after_wake"] = still_open(sockets)
    figures.update(await unservable_job(portal, sites))
    figures["server_exceptions"] = server_exceptions(sites)
    abort(sockets)
    return figures


async def wake_all(portal: Portal, sites: list[LiveSite]) -> dict[str, Any]:
    """One `work.available` to every worker, sent through Redis by a process with the portal's
    settings (as a deploy sends it); the daphne processes' and PostgreSQL's CPU until the
    processes are quiet again (their background CPU, from pings and idle polls, measured
    first and taken out), and the database transactions it cost (idle polls included)."""
    idle_since, idle_cpu = time.time(), cpu_seconds(sites)
    await asyncio.sleep(STATS_DELAY_S)  # the hellos' transactions are all counted first
    background = (cpu_seconds(sites) - idle_cpu) / (time.time() - idle_since)
    before_xacts = database_transactions(portal.database)
    before_cpu, database = cpu_seconds(sites), DatabaseCPU(portal.database)
    started = time.time()
    sent = await run_role(portal, "wake")
    settled_at = await until_quiet(sites, background)
    cpu = cpu_seconds(sites) - before_cpu - background * (time.time() - started)
    database_cpu = database.stop()
    await asyncio.sleep(STATS_DELAY_S)
    return {
        "background_cpu_share_per_process": round(background / len(sites), 3),
        "wake_members": sent["members"],
        "wake_group_send_ms": sent["group_send_ms"],
        "wake_message_bytes": sent["message_bytes"],
        "wake_settle_s": round(settled_at - sent["sent_at"], 2),
        "wake_cpu_s": round(cpu, 2),
        "wake_db_cpu_s": round(database_cpu, 2),
        "wake_db_transactions": database_transactions(portal.database) - before_xacts,
    }


async def unservable_job(portal: Portal, sites: list[LiveSite]) -> dict[str, Any]:
    """A job that needs WebGPU, which no idle worker has: its deploy wakes them all, and then
    every idle poll (any_work() is true) offers it to every waiting worker again. The share of
    a CPU each daphne process and PostgreSQL used over UNSERVABLE_S."""
    before_cpu, database_cpu = cpu_seconds(sites), DatabaseCPU(portal.database)
    sent = await run_role(portal, "webgpu-job")
    await asyncio.sleep(UNSERVABLE_S)
    elapsed = time.time() - sent["sent_at"]
    busy = (cpu_seconds(sites) - before_cpu) / elapsed / len(sites)
    database = database_cpu.stop() / elapsed
    return {
        "unservable_window_s": round(elapsed, 1),
        "unservable_cpu_share_per_process": round(busy, 2),
        "unservable_db_cpu_share": round(database, 2),
    }


async def run_role(portal: Portal, role: str) -> dict[str, Any]:
    """Run one of ROLES in a process with the portal's settings; the JSON line it prints."""
    env = {**portal.site.env, "BENCH_SCALE_PAYER": json.dumps(portal.payer)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scale", role, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"bench.scale {role} exited with {process.returncode}")
    return dict(json.loads(output.decode().splitlines()[-1]))


async def until_quiet(sites: list[LiveSite], background: float) -> float:
    """When the daphne processes last used more than QUIET_CPU_S of CPU in QUIET_WINDOW_S
    beyond their `background` CPU seconds a second."""
    threshold = QUIET_CPU_S + background * QUIET_WINDOW_S
    last = cpu_seconds(sites)
    busy_at = time.time()
    quiet_windows = 0
    while quiet_windows < 4:
        await asyncio.sleep(QUIET_WINDOW_S)
        now = cpu_seconds(sites)
        if now - last > threshold:
            busy_at, quiet_windows = time.time(), 0
        else:
            quiet_windows += 1
        last = now
    return busy_at


class DatabaseCPU:
    """The CPU seconds of the PostgreSQL backends serving one database, sampled every half
    second in a thread: a process closes its connection after CONN_MAX_AGE and a new backend
    takes over, so each backend's run time is followed while it lives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        import psycopg

        name = urlsplit(self.url).path.strip("/")
        with psycopg.connect(self.url, autocommit=True) as connection:
            while self.running:
                for (pid,) in connection.execute(BACKENDS_SQL, [name]).fetchall():
                    try:
                        seconds = run_time(pid)
                    except psutil.Error:
                        continue  # a backend that ended meanwhile
                    self.first.setdefault(pid, seconds)
                    self.last[pid] = seconds
                time.sleep(0.5)

    def stop(self) -> float:
        """Stop sampling; the CPU seconds the backends used meanwhile."""
        self.running = False
        self.thread.join()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


# the backends of the processes' connections (not the sampler's own)
BACKENDS_SQL = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"


def database_transactions(url: str) -> int:
    import psycopg

    name = urlsplit(url).path.strip("/")
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0]) if row else 0


def idle_embedded(file_limit: int) -> dict[str, Any]:
    """One embedded process filled with idle workers up to BUDGET_MB, or as many as open
    files allow (this process holds one per worker, and so does the server)."""
    from testkit.synthetic_worker import log_in

    load = wait_for_quiet()
    cap = min(EMBEDDED_MAX, file_limit - FD_MARGIN)
    portal = start_portal(backend=EMBEDDED)
    try:
        session = log_in(portal.site.url, WORKERS_EMAIL, PASSWORD)
        figures = asyncio.run(fill_to_budget(portal.site, session, cap))
    finally:
        portal.site.stop(kill=True)
        portal.stop()
    return {"load_avg_1m": load, **figures}


async def fill_to_budget(site: LiveSite, session: str, cap: int) -> dict[str, Any]:
    assert site.process is not None
    server = psutil.Process(site.process.pid)

    def over_budget() -> bool:
        return server.memory_info().rss / 2**20 >= BUDGET_MB

    empty_mb = server.memory_info().rss / 2**20
    sockets, failed = await open_idle([site.url], session, cap, over_budget)
    await asyncio.sleep(SETTLE_S)
    figures = {
        "workers": len(sockets),
        "connect_failures": failed,
        "still_connected": still_open(sockets),
        **process_figures(site),
        "rss_before_mb": round(empty_mb, 1),
        "budget_mb": BUDGET_MB,
        "stopped_by": stopped_by(over_budget(), cap),
        "server_exceptions": server_exceptions([site]),
    }
    per_worker = (figures["rss_mb"] - empty_mb) / max(len(sockets), 1)
    figures["kib_per_worker"] = round(per_worker * 1024, 1)
    # where open files stopped it first: as many as the budget would hold at that rate
    figures["budget_holds_estimate"] = int((BUDGET_MB - empty_mb) / per_worker) if per_worker else 0
    abort(sockets)
    return figures


def stopped_by(over_budget: bool, cap: int) -> str:
    if over_budget:
        return "memory budget"
    if cap == EMBEDDED_MAX:
        return f"BENCH_SCALE_EMBEDDED_MAX ({cap})"
    return f"open files (at most {cap})"


def send_wake() -> None:
    """(A process with the portal's settings) one `work.available` to the workers group, as
    notify.work_available sends it; prints its members, size and time."""
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from portal.scheduler.notify import WORK_AVAILABLE, WORKERS_GROUP

    layer: Any = get_channel_layer()
    members = async_to_sync(group_members)(layer, WORKERS_GROUP)
    by_process: dict[str, list[str]] = {}
    for channel in members:
        by_process.setdefault(layer.non_local_name(channel), []).append(channel)
    size = sum(len(layer.serialize({**WORK_AVAILABLE, "__asgi_channel__": names}))
               for names in by_process.values())  # fmt: skip
    sent_at = time.time()
    started = time.perf_counter()
    async_to_sync(layer.group_send)(WORKERS_GROUP, WORK_AVAILABLE)
    elapsed = (time.perf_counter() - started) * 1000
    figures = {"members": len(members), "message_bytes": size, "group_send_ms": round(elapsed, 1)}
    print(json.dumps({**figures, "sent_at": sent_at}))


async def group_members(layer: Any, group: str) -> list[str]:
    connection = layer.connection(layer.consistent_hash(group))
    return [name.decode() for name in await connection.zrange(layer._group_key(group), 0, -1)]


# --- part B: N processes behind HAProxy -------------------------------------------------------


@dataclass
class Balancer:
    """HAProxy in front of the daphne processes; `url` is what workers and clients use."""

    process: subprocess.Popen[bytes]
    url: str
    config: Path

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.config.unlink(missing_ok=True)


def start_balancer(urls: list[str]) -> Balancer:
    """haproxy on a free port, round robin over `urls`, websockets passed through."""
    port = free_port()
    servers = "\n".join(
        f"    server daphne{n} {urlsplit(url).netloc}" for n, url in enumerate(urls, 1)
    )
    handle, name = tempfile.mkstemp(prefix="dcp-haproxy-", suffix=".cfg")
    os.close(handle)
    config = Path(name)
    # each connection through it is two open files; haproxy refuses a maxconn they cannot hold
    maxconn = (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_MARGIN) // 2
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers, maxconn=maxconn))
    process = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"haproxy exited early:\n{stderr[-2000:]}")
        try:
            with socket_to(port):
                return Balancer(process, f"http://127.0.0.1:{port}", config)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("haproxy did not start listening within 10 s")


def socket_to(port: int) -> Any:
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=0.5)


def all_process_counts() -> dict[str, Any]:
    """One figure per process count, or why there are none."""
    if shutil.which("haproxy") is None:
        return {"skipped": "haproxy is not on PATH (Debian: apt-get install -y haproxy)"}
    return {"runs": [behind_balancer(count) for count in PROCESS_COUNTS]}


def behind_balancer(count: int) -> dict[str, Any]:
    """`count` daphne processes behind HAProxy: WORKERS synthetic workers and CLIENTS client
    processes through it, SLICES trivial slices in all; then the scheduler's tables checked."""
    load = wait_for_quiet()
    with contextlib.ExitStack() as cleanup:
        portal = start_portal(backend=POSTGRES_REDIS)
        cleanup.callback(portal.stop)
        sites = [portal.site]
        cleanup.callback(stop_all, sites)
        more_processes(portal, count - 1, sites)
        balancer = start_balancer([site.url for site in sites])
        cleanup.callback(balancer.stop)
        peaks = [PeakRSS(site.process.pid) for site in sites if site.process is not None]
        for peak in peaks:
            cleanup.callback(peak.stop)
        workers = start_workers(balancer, WORKERS)  # type: ignore[arg-type]  # reads its url
        cleanup.callback(stop_process, workers)
        time.sleep(2)  # the workers sign in and connect
        figures = {"processes": count, "load_avg_1m": load}
        figures.update(balanced_run(portal, sites, balancer))
        figures["peak_rss_mb_per_process"] = [round(peak.peak_mb, 1) for peak in peaks]
    return figures


def balanced_run(portal: Portal, sites: list[LiveSite], balancer: Balancer) -> dict[str, Any]:
    """The clients' jobs through the balancer; throughput, each process's share, the check."""
    cpu_before = [cpu_seconds([site]) for site in sites]
    database = DatabaseCPU(portal.database)
    runs = run_clients(balancer.url, CLIENTS, SLICES // CLIENTS)
    figures = throughput_of(runs)
    figures["db_cpu_s"] = round(database.stop(), 1)
    figures["cpu_s_per_process"] = [
        round(cpu_seconds([site]) - before, 1)
        for site, before in zip(sites, cpu_before, strict=True)
    ]
    figures.update(sockets_per_process(sites))
    figures.update(check_leases(portal.database, [run["job"] for run in runs]))
    figures["server_exceptions"] = server_exceptions(sites)
    return figures


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def run_clients(url: str, clients: int, slices: int) -> list[dict[str, Any]]:
    """`clients` client processes at once, each deploying and checking one job of `slices`."""
    command = [sys.executable, "-m", "bench.scale", "client", url, str(slices)]
    processes = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE) for _ in range(clients)
    ]
    runs = []
    for process in processes:
        output, _ = process.communicate(timeout=CLIENT_TIMEOUT_S)
        if process.returncode:
            raise RuntimeError(f"a client exited with {process.returncode}")
        runs.append(json.loads(output.decode().splitlines()[-1]))
    return runs


def run_client(url: str, slices: str) -> None:
    """(A client process) deploy `slices` slices of x + 1 through `url`, check every value."""
    import dcp

    dcp.init(url)
    job = dcp.compute_for(1, int(slices), WORK)
    started = time.time()
    results = quiet_exec(job, OFFER)
    ended = time.time()
    correct = results.values() == list(range(2, int(slices) + 2))
    print(json.dumps({"job": job.id, "started": started, "ended": ended, "correct": correct}))


def throughput_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Slices a second over the whole window, from the first exec() to the last return."""
    window = max(run["ended"] for run in runs) - min(run["started"] for run in runs)
    slices = SLICES // CLIENTS * len(runs)
    return {
        "slices": slices,
        "clients": len(runs),
        "workers": WORKERS,
        "slices_per_s": round(slices / window, 1),
        "window_s": round(window, 2),
        "client_values_correct": all(run["correct"] for run in runs),
    }


def sockets_per_process(sites: list[LiveSite]) -> dict[str, list[int]]:
    """How many worker and client websockets each process accepted, from its access log."""
    logs = [site.requests_seen() for site in sites]
    return {
        "worker_sockets_per_process": [log.count("WSCONNECT /ws/worker/") for log in logs],
        "client_sockets_per_process": [log.count("WSCONNECT /ws/client/") for log in logs],
    }


SLICE_CHECK_SQL = """
SELECT count(*), count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE attempts > 1),
       count(*) FILTER (WHERE status = 'done' AND (result #>> '{}')::bigint <> number + 1)
FROM scheduler_slice WHERE job_id = ANY(%(jobs)s)
"""
LOST_CHECK_SQL = """
SELECT count(*) FROM scheduler_lostlease l JOIN scheduler_slice s ON s.id = l.slice_id
WHERE s.job_id = ANY(%(jobs)s)
"""
JOB_CHECK_SQL = """
SELECT sum(total), sum(computed), sum(paid), sum(offer * total),
       count(*) FILTER (WHERE status = 'finished')
FROM scheduler_job WHERE id = ANY(%(jobs)s)
"""


def check_leases(database: str, jobs: list[str]) -> dict[str, Any]:
    """The scheduler's own tables after the jobs: every slice has one row, was handed out once
    (`attempts`: a second lease of a slice adds one, and a slice is leased again only after
    its lease was given back or lapsed, which LostLease records), is done with x + 1, and the
    escrow paid each result once."""
    import psycopg

    with psycopg.connect(database) as connection:
        rows, done, leased_again, wrong = connection.execute(
            SLICE_CHECK_SQL, {"jobs": jobs}
        ).fetchone()
        (lost,) = connection.execute(LOST_CHECK_SQL, {"jobs": jobs}).fetchone()
        total, computed, paid, owed, finished = connection.execute(
            JOB_CHECK_SQL, {"jobs": jobs}
        ).fetchone()
    problems = [
        f"{what}: {value}"
        for what, value, ok in (
            ("slice rows", rows, rows == total),
            ("slices done", done, done == total),
            (
                "slices leased more than once without a lapsed lease",
                leased_again,
                lost >= leased_again,
            ),
            ("wrong values stored", wrong, wrong == 0),
            ("computed", computed, computed == total),
            ("paid (base units)", paid, paid == owed),
            ("jobs finished", finished, finished == len(jobs)),
        )
        if not ok
    ]
    return {
        "lease_check": "ok" if not problems else "FAILED: " + "; ".join(problems),
        "slices_leased_more_than_once": leased_again,
        "lost_leases": lost,
    }


# --- part C: what each step costs -------------------------------------------------------------

COST_WORKER = "cost-worker"


def all_costs() -> dict[str, Any]:
    """The costs, measured by a process with the portal's settings on a fresh portal's database
    (its daphne process runs beside it, idle)."""
    load = wait_for_quiet()
    portal = start_portal(backend=POSTGRES_REDIS)
    try:
        env = {**portal.site.env, "BENCH_SCALE_PAYER": json.dumps(portal.payer)}
        command = [sys.executable, "-m", "bench.scale", "costs"]
        completed = subprocess.run(
            command, cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=600
        )
    finally:
        portal.stop()
    return {"load_avg_1m": load, **json.loads(completed.stdout.splitlines()[-1])}


@dataclass
class CostContext:
    """Who deploys and who works in the cost measurements, and the group sends counted."""

    owner: Any
    payer: dict[str, str]
    volunteer: Any
    address: str
    sends: Counter[str]


def cost_context() -> CostContext:
    """(A process with the portal's settings) the First Dev and the volunteer of the portal,
    the volunteer's worker COST_WORKER connected (no socket: a row), group sends counted."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from dcp.protocol.messages import WorkerHello
    from portal.scheduler import services

    users = get_user_model().objects
    payer = json.loads(os.environ["BENCH_SCALE_PAYER"])
    volunteer = users.get(email=WORKERS_EMAIL)
    hello = WorkerHello(type="hello", id=1, cores=1)
    address, _ = services.connect_worker(worker=COST_WORKER, user=volunteer, hello=hello)
    context = CostContext(users.get(email=payer["email"]), payer, volunteer, address, Counter())
    count_group_sends(context.sends)
    return context


def measure_costs() -> None:
    """(A process with the portal's settings) every step's cost; prints them as JSON."""
    context = cost_context()
    from dcp.protocol.messages import WorkerHello
    from portal.scheduler import services

    hello = WorkerHello(type="hello", id=1, cores=1)
    names = iter(range(10**9))

    def connect() -> None:
        services.connect_worker(worker=f"cost-{next(names)}", user=context.volunteer, hello=hello)

    costs = costs_of({"hello": connect}, context)
    for size in COST_TASK_SIZES:
        costs.update(task_costs(size, context))
    costs.update(idle_costs(context))
    costs.update(costs_of({"deploy_1m_range": lambda: deploy(context, 1_000_000)}, context, 5))
    print(json.dumps(costs))


def deploy_webgpu_job() -> None:
    """(A process with the portal's settings) deploy a job that only WebGPU workers take."""
    context = cost_context()
    sent_at = time.time()
    deploy(context, 1000, requirements={"environment": {"webgpu": True}})
    print(json.dumps({"sent_at": sent_at}))


def task_costs(size: int, context: CostContext) -> dict[str, Any]:
    """A claim of `size` slices and the result batch that answers it, in turn, as a worker
    does; and a client's status request on the same job."""
    from portal.scheduler import services

    job = deploy(context, size * COST_REPEAT)
    held: dict[str, Any] = {}

    def claim() -> None:
        held["task"] = services.claim_slices(
            worker=COST_WORKER, limit=size, user=context.volunteer, most_held=2 * size
        )

    def answer() -> None:
        task = held.pop("task")
        services.record_results(
            worker=COST_WORKER,
            payee=context.volunteer,
            payee_address=context.address,
            job_id=task.job.id,
            results=[(number, datum + 1) for number, datum in task.slices],
            errors=[],
            batch_key=f"cost:{task.job.id}:{task.slices[0][0]}",
            cpu_ms={number: 0.5 for number, _ in task.slices},
        )

    def status() -> None:
        status_reply(job.id, context.payer["identity"])

    steps = {f"claim_{size}": claim, f"result_batch_{size}": answer, f"status_{size}": status}
    return costs_of(steps, context)


def idle_costs(context: CostContext) -> dict[str, Any]:
    """What a waiting worker costs when nothing is there for it: a claim that finds no work
    (each worker woken makes one), and one idle poll of a process (one per
    DISPATCH_POLL_SECONDS, whatever the number of waiting workers)."""
    from portal.scheduler import services

    def idle_claim() -> None:
        assert (
            services.claim_slices(worker=COST_WORKER, limit=1, user=context.volunteer, most_held=2)
            is None
        )

    def idle_poll() -> None:
        services.requeue_lapsed_leases()
        services.any_work()

    return costs_of({"idle_claim": idle_claim, "idle_poll": idle_poll}, context)


def deploy(context: CostContext, total: int, requirements: dict[str, Any] | None = None) -> Any:
    """A range job of `total` slices of x + 1, paid one base unit a slice."""
    import uuid

    from portal.scheduler import services

    spec = services.JobSpec(
        ref=uuid.uuid4().hex,
        language="python",
        source=WORK,
        args=[],
        input_kind="range",
        input_spec={"start": 1, "end": total, "step": 1},
        offer=1,
        requirements=requirements or {},
    )
    job, _ = services.deploy_job(
        owner=context.owner,
        identity=context.payer["identity"],
        payer=context.payer["account"],
        spec=spec,
    )
    return job


def status_reply(job_id: str, identity: str) -> Any:
    """What the client socket's `status` request reads (ClientConsumer.on_status)."""
    from portal.scheduler import selectors

    job = selectors.job_of_identity(job_id, identity)
    return selectors.job_status(job), selectors.job_info(job)


def count_group_sends(sends: Counter[str]) -> None:
    """Count the channel layer's group sends into `sends`, by group kind (`job`, `workers`)."""
    from channels.layers import get_channel_layer

    layer: Any = get_channel_layer()
    send = layer.group_send

    async def counted(group: str, message: dict[str, Any]) -> None:
        sends[group.split(".")[0]] += 1
        await send(group, message)

    layer.group_send = counted


@dataclass
class StepCosts:
    """What one step cost over its runs: wall times, the CPU of this process (what a daphne
    process would spend) and of its PostgreSQL backend, SQL queries and statements, group
    sends by group kind."""

    times: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    db_cpu_s: float = 0.0
    queries: int = 0
    statements: int = 0
    sends: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        runs = len(self.times)
        return {
            "ms": round(statistics.median(self.times) * 1000, 3),
            "cpu_ms": round(self.cpu_s * 1000 / runs, 2),
            "db_cpu_ms": round(self.db_cpu_s * 1000 / runs, 2),
            "queries": round(self.queries / runs, 2),
            "statements": round(self.statements / runs, 2),
            "group_sends": {kind: round(n / runs, 2) for kind, n in self.sends.items()},
        }


def costs_of(
    steps: dict[str, Callable[[], Any]], context: CostContext, repeat: int = COST_REPEAT
) -> dict[str, dict[str, Any]]:
    """Run the steps in turn `repeat` times; each one's median time (its announcements
    included: they go out when its transaction commits), mean CPU here and in PostgreSQL,
    SQL queries (BEGIN and COMMIT included; an executemany is one query of many statements)
    and group sends a run."""
    costs = {name: StepCosts() for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            measure_step(step, costs[name], context)
    return {name: step_costs.summary() for name, step_costs in costs.items()}


def measure_step(step: Callable[[], Any], costs: StepCosts, context: CostContext) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.ensure_connection()
    connection.queries_log.clear()  # a bounded deque: once full, CaptureQueriesContext counts 0
    backend = connection.connection.info.backend_pid
    context.sends.clear()
    db_before = run_time(backend)
    cpu_before = time.process_time()
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        step()
        costs.times.append(time.perf_counter() - started)
    costs.cpu_s += time.process_time() - cpu_before
    costs.db_cpu_s += run_time(backend) - db_before
    costs.queries += len(captured)
    costs.statements += sum(map(statement_count, captured.captured_queries))
    costs.sends.update(context.sends)


def run_time(pid: int) -> float:
    """CPU seconds a process has run: to the nanosecond from Linux's schedstat, else to the
    clock tick (psutil)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return sum(psutil.Process(pid).cpu_times()[:2])


def statement_count(query: dict[str, str]) -> int:
    """Statements one captured query ran: Django logs an executemany as "<n> times: <sql>"."""
    times, separator, _ = query["sql"].partition(" times: ")
    return int(times) if separator and times.isdigit() else 1


# --- the line ---------------------------------------------------------------------------------

PARTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "idle": idle_over_processes,
    "idle_embedded": idle_embedded,
    "processes": lambda file_limit: all_process_counts(),
    "costs": lambda file_limit: all_costs(),
}
WANTED = os.environ.get("BENCH_SCALE_PARTS", ",".join(PARTS)).split(",")


def scale() -> dict[str, Any]:
    """Every part asked for (BENCH_SCALE_PARTS, all by default), or why none ran."""
    file_limit = raise_file_limit()
    memory = round(psutil.virtual_memory().total / 2**30)
    figures: dict[str, Any] = {
        "benchmark": "scale",
        "machine": f"{psutil.cpu_count()} CPUs, {memory} GiB",
        "open_files_limit": file_limit,
    }
    if POSTGRES_REDIS not in backends():
        figures["skipped"] = (
            "PostgreSQL or Redis is not answering (or BENCH_BACKENDS leaves it out)"
        )
        return figures
    for name in WANTED:
        figures[name] = PARTS[name](file_limit)
        print(f"bench.scale: {name} done: {json.dumps(figures[name])}", file=sys.stderr)
    return figures


ROLES: dict[str, Callable[..., None]] = {
    "client": run_client,
    "wake": send_wake,
    "webgpu-job": deploy_webgpu_job,
    "costs": measure_costs,
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
        return
    print(json.dumps(scale()), flush=True)


if __name__ == "__main__":
    main()
