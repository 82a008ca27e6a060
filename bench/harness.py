"""Shared parts of the benchmarks: a live portal with a funded First Dev and a worker user."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from testkit.livesite import REPO, LiveSite

PASSWORD = "benchmark password 42"


@dataclass
class Portal:
    site: LiveSite
    home: Path  # DCP_HOMEDIR of the deploying First Dev
    payer: dict[str, str]


def start_portal(credits: str = "1000000") -> Portal:
    """daphne on the embedded defaults, a First Dev with `credits` and a volunteer account."""
    workdir = Path(tempfile.mkdtemp(prefix="dcp-bench-"))
    site = LiveSite(workdir, debug=False)
    site.migrate()
    home = workdir / "home"
    payer = site.seed(home, PASSWORD, credits)
    site.start()
    os.environ["DCP_HOMEDIR"] = str(home)
    return Portal(site=site, home=home, payer=payer)


def start_workers(site: LiveSite, count: int) -> subprocess.Popen[bytes]:
    """`count` synthetic workers in one process, signed in as the volunteer."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testkit.synthetic_worker",
            "--url",
            site.url,
            "--email",
            "worker@example.com",
            "--password",
            PASSWORD,
            "--workers",
            str(count),
        ],
        cwd=REPO,
    )


class PeakRSS:
    """Samples a process's resident memory in the background; `peak_mb` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    @property
    def now_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    def stop(self) -> None:
        self.running = False


def add_first_dev(site: LiveSite, email: str, home: Path | None = None) -> None:
    """Another First Dev with PASSWORD (and the First Devs grant); with `home`, its keystores go to
    `home`/.dcp, so that a client run with DCP_HOMEDIR=`home` deploys as this user."""
    keystores = ["--keystores", str(home / ".dcp")] if home is not None else []
    site.manage("create_first_dev", email, "--password", PASSWORD, *keystores)
