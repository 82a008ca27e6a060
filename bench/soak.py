"""Soak: honest jobs keep completing while a hostile job and misbehaving workers run beside
them. Prints one JSON line.

Everything runs on this machine over loopback: the portal (daphne, SQLite, in-memory channel
layer, production settings), synthetic workers of one volunteer (testkit/synthetic_worker.py),
and honest clients, each its own process, deploying small paid range jobs back to back and
checking every value. Their throughput is measured over two windows of SOAK_PHASE_SECONDS:
alone, then beside

- a hostile client (another First Dev, its own process) deploying free jobs whose every slice
  is a string of SOAK_HOSTILE_SLICE_KIB that the work function hands back, so that its task and
  result frames come near the 4 MiB frame limit, computed by the same workers;
- rogue workers (another volunteer, testkit/rogue_worker.py) that go round and round on fresh
  connections: take a task and answer it, send the same results again, claim results for
  slices they were not given (with wrong values), flood `progress` frames (the scheduler
  closes the socket with 4008 when it sees the flood; the rogue hangs up itself after
  FLOOD_WAIT_SECONDS otherwise), send a frame over the limit (4009), and ask for a websocket
  upgrade with a 20 KiB header (431).

`ratio` is the honest slices per second beside the hostile load over those alone; the
`rogue_*_kept` figures and `honest_wrong_values` should stay 0. SOAK_HOSTILE_SLICES=0 or
SOAK_ROGUES=0 leaves one kind of hostile load out. Bounded in time (about a minute) and in
count (SOAK_MAX_JOBS per client).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from bench.harness import (
    PASSWORD,
    PeakRSS,
    Portal,
    add_first_dev,
    start_portal,
    start_workers,
)
from dcp.protocol.limits import MAX_FRAME_BYTES
from testkit.livesite import REPO
from testkit.rogue_worker import RogueWorker

PHASE_SECONDS = float(os.environ.get("SOAK_PHASE_SECONDS", "15"))
WARMUP_SECONDS = float(os.environ.get("SOAK_WARMUP_SECONDS", "15"))  # at most
WORKERS = int(os.environ.get("SOAK_WORKERS", "4"))
HONEST_CLIENTS = int(os.environ.get("SOAK_HONEST_CLIENTS", "2"))
HONEST_SLICES = int(os.environ.get("SOAK_HONEST_SLICES", "200"))
HONEST_OFFER = "0.000001"
HOSTILE_SLICES = int(os.environ.get("SOAK_HOSTILE_SLICES", "4"))  # per hostile job
HOSTILE_SLICE_KIB = int(os.environ.get("SOAK_HOSTILE_SLICE_KIB", "3072"))
ROGUES = int(os.environ.get("SOAK_ROGUES", "2"))
ROGUE_DROPS = int(os.environ.get("SOAK_ROGUE_DROPS", "0"))  # tasks taken and dropped a round
MAX_JOBS = int(os.environ.get("SOAK_MAX_JOBS", "10000"))  # per client and role

HONEST_WORK = "def work(x):\n    return x + 1\n"
HOSTILE_WORK = "def work(x):\n    return x\n"
FORGED_CLAIMS = 20  # slices a rogue claims results for without having been given them
FLOOD_FRAMES = 2000  # at most; an idle scheduler closes the socket after a few hundred
FLOOD_WAIT_SECONDS = 2  # then the rogue hangs up itself
BIG_HEADER_BYTES = 20 * 1024
HOSTILE = "hostile@example.com"  # the First Dev who deploys the hostile jobs
ROGUE = "rogue@example.com"  # the volunteer whose workers misbehave
ROLE_GRACE_SECONDS = 10  # a role that outlives the run by this much stops by itself


# --- the clients, each in a process of its own: python -m bench.soak ROLE DEADLINE ----------


def honest_client(deadline: float) -> None:
    """Small paid range jobs back to back until `deadline`: a JSON line per job."""
    import dcp
    from bench.throughput import quiet_exec

    expected = list(range(2, HONEST_SLICES + 2))
    for _ in range(MAX_JOBS):
        if time.time() >= deadline:
            return
        job = dcp.compute_for(1, HONEST_SLICES, HONEST_WORK)
        try:
            values = quiet_exec(job, HONEST_OFFER).values()
        except dcp.DCPError as error:
            report(failed=error.code)
            continue
        wrong = sum(value != want for value, want in zip(values, expected, strict=True))
        report(slices=HONEST_SLICES, wrong=wrong)


def hostile_client(deadline: float) -> None:
    """Free jobs of huge slices, echoed back by the work function, until `deadline`."""
    import dcp
    from bench.throughput import quiet_exec

    blob = "h" * (HOSTILE_SLICE_KIB * 1024)
    for _ in range(MAX_JOBS):
        if time.time() >= deadline:
            return
        job = dcp.compute_for([blob] * HOSTILE_SLICES, HOSTILE_WORK)
        try:
            report(slices=len(quiet_exec(job, "0")))
        except dcp.DCPError as error:
            report(failed=error.code)


def report(**figures: Any) -> None:
    print(json.dumps({"at": time.time(), **figures}), flush=True)


ROLES = {"honest": honest_client, "hostile": hostile_client}


@dataclass
class Role:
    """A role's process and the JSON lines it has printed so far."""

    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, url: str, home: Path, deadline: float) -> Role:
        """`python -m bench.soak NAME DEADLINE` as the user whose keystores are in `home`."""
        env = {**os.environ, "DCP_HOMEDIR": str(home), "DCP_SCHEDULER_URL": url}
        command = [sys.executable, "-m", "bench.soak", name, str(deadline)]
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        role = cls(process)
        threading.Thread(target=role.read, daemon=True).start()
        return role

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def stop(self) -> None:
        """End the role now: a job it was following is abandoned (its figures are taken)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- rogue workers, in this process -----------------------------------------------------------


async def rogue_rounds(url: str, session: str, end: float, tally: Counter[str]) -> None:
    """Misbehave round after round until `end`."""
    while time.time() < end:
        try:
            await asyncio.wait_for(rogue_round(url, session, tally), timeout=20)
            tally["rounds"] += 1
        except (OSError, TimeoutError, websockets.WebSocketException):
            tally["rounds_cut_short"] += 1
            await asyncio.sleep(0.2)


async def rogue_round(url: str, session: str, tally: Counter[str]) -> None:
    """One round of misbehaving: on one connection until the flood, then on fresh ones."""
    for _ in range(ROGUE_DROPS):  # take a task and hang up without a word, as a crashing tab
        dropper = await RogueWorker.connect(url, session)
        await dropper.take_task()
        await dropper.close()
        tally["tasks_dropped"] += 1
    rogue = await RogueWorker.connect(url, session)
    try:
        task = await rogue.take_task()
        job = task["job"]["id"]
        answers = rogue_answers(task)
        tally["results_kept"] += await rogue_send(rogue, job, answers)
        tally["duplicates_kept"] += await rogue_send(rogue, job, answers)
        tally["forged_kept"] += await rogue_send(rogue, job, forged_claims(answers))
        await rogue_flood(rogue, job, list(answers), tally)
    finally:
        await rogue.close()
    giant = await RogueWorker.connect(url, session)
    with contextlib.suppress(OSError, websockets.ConnectionClosed):  # cut off mid-frame
        await giant.send({"type": "progress", "job": "x" * (MAX_FRAME_BYTES + 1), "slices": []})
    tally[f"closed_{await giant.close_code()}"] += 1
    tally[f"upgrade_{await oversized_upgrade(url, session)}"] += 1


async def rogue_flood(rogue: RogueWorker, job: str, slices: list[int], tally: Counter[str]) -> None:
    """Progress frames as fast as the socket takes them, until the scheduler closes it or
    FLOOD_FRAMES went and FLOOD_WAIT_SECONDS more passed."""
    frame = {"type": "progress", "job": job, "slices": slices}
    tally["flood_frames"] += await rogue.flood(frame, FLOOD_FRAMES)
    try:
        tally[f"closed_{await rogue.close_code(timeout=FLOOD_WAIT_SECONDS)}"] += 1
    except TimeoutError:
        tally["floods_not_closed"] += 1


def rogue_answers(task: dict[str, Any]) -> dict[int, Any]:
    """The right values of a task's slices (a rogue that lied about them would be paid for
    lies on a job without verification: that is what `verify` is for, not measured here)."""
    from testkit.synthetic_worker import compile_work

    work = compile_work(task["job"]["source"])
    return {s["slice"]: work(s["datum"], *task["job"]["args"]) for s in task["slices"]}


def forged_claims(answers: dict[int, Any]) -> dict[int, Any]:
    """Wrong values for slices of the same job that this rogue was not given."""
    numbers = (n for n in range(1, max(answers) + FORGED_CLAIMS + 2) if n not in answers)
    return {n: "forged" for n, _ in zip(numbers, range(FORGED_CLAIMS), strict=False)}


async def rogue_send(rogue: RogueWorker, job: str, values: dict[int, Any]) -> int:
    """Send one result frame; how many of its results the scheduler kept."""
    await rogue.results(job, values)
    return int((await rogue.next("ack"))["accepted"])


async def oversized_upgrade(url: str, session: str) -> int:
    """Ask for a worker socket with a 20 KiB header: the HTTP status of the answer."""
    headers = {"Cookie": f"sessionid={session}", "Origin": url, "X-Padding": "p" * BIG_HEADER_BYTES}
    try:
        async with websockets.connect(
            url.replace("http", "ws", 1) + "/ws/worker/", additional_headers=headers
        ):
            return 101
    except InvalidStatus as refusal:
        return refusal.response.status_code


async def run_rogues(url: str, session: str, end: float) -> Counter[str]:
    """ROGUES rogue workers until `end` (a round still going then is cut off); what they saw."""
    tally: Counter[str] = Counter()
    rounds = asyncio.gather(*(rogue_rounds(url, session, end, tally) for _ in range(ROGUES)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rounds, timeout=max(0.0, end - time.time()))
    return tally


# --- figures ----------------------------------------------------------------------------------


def honest_figures(
    roles: list[Role], start: float, end: float, rss: PeakRSS, window: str
) -> dict[str, Any]:
    """The honest jobs completed between `start` and `end`, and the server's peak memory
    meanwhile, each figure's name ending in `window`."""
    rss.stop()
    done = sorted(
        (line for role in roles for line in role.lines if start <= line["at"] < end),
        key=lambda line: line["at"],
    )
    finished = [line for line in done if "slices" in line]
    slices = sum(line["slices"] for line in finished)
    moments = [start, *(line["at"] for line in finished), end]
    figures = {
        "honest_slices_per_s": round(slices / (end - start), 1),
        "honest_jobs": len(finished),
        "honest_jobs_failed": len(done) - len(finished),
        "honest_longest_wait_s": round(max(b - a for a, b in pairwise(moments)), 2),
        "honest_wrong_values": sum(line["wrong"] for line in finished),
        "server_peak_rss_mb": round(rss.peak_mb, 1),
    }
    return {f"{name}_{window}": value for name, value in figures.items()}


def hostile_figures(roles: list[Role], tally: Counter[str]) -> dict[str, Any]:
    lines = [line for role in roles for line in role.lines]
    jobs = [line for line in lines if "slices" in line]
    figures: dict[str, Any] = {
        "hostile_jobs": len(jobs),
        "hostile_slices": sum(line["slices"] for line in jobs),
        "hostile_jobs_failed": len(lines) - len(jobs),
    }
    figures.update({f"rogue_{name}": count for name, count in sorted(tally.items())})
    return figures


# --- the run ----------------------------------------------------------------------------------


def soak() -> dict[str, Any]:
    """Start everything, measure both windows, stop everything: the figures."""
    began = time.perf_counter()
    portal = start_portal()
    figures: dict[str, Any] = {
        "benchmark": "soak",
        "phase_s": PHASE_SECONDS,
        "workers": WORKERS,
        "honest_clients": HONEST_CLIENTS,
        "honest_slices_per_job": HONEST_SLICES,
        "hostile_slice_kib": HOSTILE_SLICE_KIB,
        "hostile_slices_per_job": HOSTILE_SLICES,
        "rogues": ROGUES,
    }
    roles: list[Role] = []
    workers = None
    try:
        with ThreadPoolExecutor() as pool:  # each a management command of a few seconds
            hostile = pool.submit(add_first_dev, portal.site, HOSTILE, hostile_home(portal))
            rogue = pool.submit(add_first_dev, portal.site, ROGUE)
            workers = start_workers(portal.site, WORKERS)
            hostile.result(), rogue.result()
        figures.update(measure(portal, roles))
        log = portal.site.log_path.read_text()
        figures["server_tracebacks"] = log.count("Traceback (most recent call last)")
    finally:
        for role in roles:
            role.stop()
        if workers is not None:
            workers.kill()
            workers.wait()
        portal.stop()
        shutil.rmtree(portal.site.workdir, ignore_errors=True)
    figures["total_s"] = round(time.perf_counter() - began, 1)
    return figures


def measure(portal: Portal, roles: list[Role]) -> dict[str, Any]:
    """The honest clients alone for a window, then beside the hostile client and the rogue
    workers for another; `roles` collects the processes started, for the caller to stop."""
    from testkit.synthetic_worker import log_in

    site = portal.site
    assert site.process is not None
    rogue_session = log_in(site.url, ROGUE, PASSWORD)
    deadline = time.time() + WARMUP_SECONDS + 2 * PHASE_SECONDS + ROLE_GRACE_SECONDS
    honest = [Role.start("honest", site.url, portal.home, deadline) for _ in range(HONEST_CLIENTS)]
    roles += honest
    start = warmed_up(honest, time.time() + WARMUP_SECONDS)
    calm_end, end = start + PHASE_SECONDS, start + 2 * PHASE_SECONDS

    rss = PeakRSS(site.process.pid)
    time.sleep(max(0.0, calm_end - time.time()))
    figures = honest_figures(honest, start, calm_end, rss, "alone")

    rss = PeakRSS(site.process.pid)
    if HOSTILE_SLICES:
        roles.append(Role.start("hostile", site.url, hostile_home(portal), deadline))
    tally = asyncio.run(run_rogues(site.url, rogue_session, end))
    time.sleep(max(0.0, end - time.time()))
    figures.update(honest_figures(honest, calm_end, end, rss, "beside"))

    if figures["honest_slices_per_s_alone"]:
        ratio = figures["honest_slices_per_s_beside"] / figures["honest_slices_per_s_alone"]
        figures["ratio"] = round(ratio, 2)
    figures.update(hostile_figures(roles[len(honest) :], tally))
    failures = Counter(line["failed"] for role in roles for line in role.lines if "failed" in line)
    figures["job_failure_codes"] = dict(failures)
    return figures


def hostile_home(portal: Portal) -> Path:
    """The DCP home of the hostile client: the hostile First Dev's keystores."""
    return portal.site.workdir / "hostile"


def warmed_up(honest: list[Role], latest: float) -> float:
    """When every honest client has completed a job (their first pays for starting up and
    for the workers' first connections), or `latest`, whichever comes first."""
    while time.time() < latest and not all(role.lines for role in honest):
        time.sleep(0.05)
    return time.time()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](float(sys.argv[2]))
        return
    print(json.dumps(soak()))


if __name__ == "__main__":
    main()
