"""Shared parts of the benchmarks: a live portal with a funded First Dev and a worker user."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

from testkit.livesite import REPO, LiveSite
from testkit.services import answers

PASSWORD = "benchmark password 42"
EMBEDDED = "embedded"  # SQLite in WAL mode and the in-memory channel layer
POSTGRES_REDIS = "postgres+redis"
# The services a PostgreSQL + Redis run uses: a fresh database on this server for each run, and
# a Redis database of the benchmarks' own (its channel-layer keys are cleared first).
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


@dataclass
class Portal:
    site: LiveSite
    home: Path  # DCP_HOMEDIR of the deploying First Dev
    payer: dict[str, str]
    backend: str = EMBEDDED
    database: str = field(default="", repr=False)  # the PostgreSQL database made for this run

    def stop(self) -> None:
        self.site.stop()
        if self.database:
            drop_database(self.database)


def backends() -> list[str]:
    """The backends this machine can run: the embedded defaults, and PostgreSQL + Redis when
    both answer (BENCH_BACKENDS=embedded limits a run to the first)."""
    wanted = os.environ.get("BENCH_BACKENDS", f"{EMBEDDED},{POSTGRES_REDIS}").split(",")
    available = [EMBEDDED]
    if answers(PG_URL) and answers(REDIS_URL):
        available.append(POSTGRES_REDIS)
    return [backend for backend in available if backend in wanted]


def start_portal(credits: str = "1000000", backend: str = EMBEDDED) -> Portal:
    """daphne with production settings on `backend`, a First Dev with `credits` and a
    volunteer account."""
    workdir = Path(tempfile.mkdtemp(prefix="dcp-bench-"))
    database = create_database() if backend == POSTGRES_REDIS else ""
    env = {"DATABASE_URL": database, "REDIS_URL": fresh_redis()} if database else {}
    site = LiveSite(workdir, debug=False, extra_env=env)
    site.migrate()
    home = workdir / "home"
    payer = site.seed(home, PASSWORD, credits)
    site.start()
    os.environ["DCP_HOMEDIR"] = str(home)
    return Portal(site=site, home=home, payer=payer, backend=backend, database=database)


def create_database() -> str:
    """A new, empty PostgreSQL database on PG_URL's server; its URL."""
    import psycopg

    name = f"dcp_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_url(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.strip("/")
    with psycopg.connect(_admin_url(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_url() -> str:
    return urlunsplit(urlsplit(PG_URL)._replace(path="/postgres"))


def fresh_redis() -> str:
    """REDIS_URL with none of an earlier run's channel-layer or cache keys."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


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
