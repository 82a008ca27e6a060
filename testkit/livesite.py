"""A real portal for end-to-end tests: daphne in a subprocess on its own SQLite database.

The server runs on the embedded defaults, writes its emails to files (Django's file-based
backend stands in for the test outbox across the process boundary), and can be stopped and
started again on the same port and database.
"""

from __future__ import annotations

import email
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from dcp.worker.browser import CHROMIUM, CHROMIUM_ARGS, WEBGPU_CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent
# The browser flags are the headless worker's (one definition); tests take them from here too.
__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "REPO",
    "WEBGPU_CHROMIUM_ARGS",
    "LiveSite",
    "free_port",
    "read_json",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveSite:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        debug: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.debug = debug
        self.extra_env = extra_env or {}
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "db.sqlite3"
        self.mail_dir = workdir / "mail"
        self.log_path = workdir / "daphne.log"
        self.access_log = workdir / "access.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="testkit.live_settings",
            DEBUG="true" if self.debug else "false",
            SQLITE_PATH=str(self.db_path),
            EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            EMAIL_FILE_PATH=str(self.mail_dir),
            PYTHONUNBUFFERED="1",
        )
        if not self.debug:  # production settings, but on plain http at 127.0.0.1
            env.update(
                SECRET_KEY="live-site-" + "k" * 50,
                ALLOWED_HOSTS="127.0.0.1,localhost",
                SECURE_SSL_REDIRECT="false",
                SECURE_COOKIES="false",
                LOG_LEVEL="WARNING",
            )
        env.update(self.extra_env)
        return env

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=REPO,
            env=self.env,
            check=True,
        )

    def start(self) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portal.serve",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--access-log",
                str(self.access_log),
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start listening within 30 s")

    def manage(self, *args: str) -> str:
        """Run a management command against this site's database; its last line of output."""
        completed = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        lines = completed.stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def seed(self, home: Path, password: str, credits: str = "100") -> dict[str, str]:
        """A paying First Dev (keystores in `home`/.dcp, `credits` extra) and a volunteer,
        payer@example.com and worker@example.com; returns the payer's addresses."""
        payer = json.loads(
            self.manage(
                "create_first_dev",
                "payer@example.com",
                "--password",
                password,
                "--keystores",
                str(home / ".dcp"),
                "--credits",
                credits,
            )
        )
        self.manage("create_first_dev", "worker@example.com", "--password", password)
        return payer

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def emails_to(self, address: str) -> list[str]:
        """Every email body the portal has sent to `address`, oldest first."""
        bodies = []
        for path in sorted(self.mail_dir.glob("*.log"), key=lambda p: p.stat().st_mtime):
            for raw in path.read_text().split("\n" + "-" * 79 + "\n"):
                message = email.message_from_string(raw.strip())
                if address in (message.get("To") or ""):
                    payload = message.get_payload(decode=True)
                    bodies.append(payload.decode() if isinstance(payload, bytes) else str(payload))
        return bodies

    def link_in_last_email(self, address: str, pattern: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for message in reversed(self.emails_to(address)):
                found = re.search(rf"https?://\S*{pattern}\S*", message)
                if found:
                    return found.group(0)
            time.sleep(0.1)
        raise AssertionError(f"no email to {address} with a link matching {pattern!r}")

    def requests_seen(self) -> str:
        """Daphne's access log: every HTTP request and websocket the server received."""
        return self.access_log.read_text() if self.access_log.exists() else ""

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Read the server's database directly, as an operator would with sqlite3."""
        with sqlite3.connect(self.db_path, timeout=10) as connection:
            return connection.execute(sql, params).fetchall()

    def ledger_balance(self, address: str) -> int:
        rows = self.query("SELECT balance FROM bank_ledgeraccount WHERE address = ?", (address,))
        return int(rows[0][0]) if rows else 0


def read_json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())
