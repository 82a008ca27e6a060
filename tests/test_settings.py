"""Settings read from the environment, and a production configuration that passes --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_pass_the_deploy_check():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="x" * 20 + "a-long-random-production-secret-" + "y" * 20,
        ALLOWED_HOSTS="portal.example.org",
        EMAIL_HOST="smtp.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_secret_key_refuses_to_start():
    result = run_manage("check", DEBUG="false", SECRET_KEY="", ALLOWED_HOSTS="portal.example.org")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_malformed_setting_is_named_in_the_error():
    result = run_manage("check", KEYSTORE_SCRYPT_N="1000")
    assert result.returncode != 0
    assert "KEYSTORE_SCRYPT_N must be a power of two" in result.stderr


def test_the_redis_channel_layer_waits_without_a_read_timeout():
    """The layer's blocking pops last 5 s, as does redis-py's default read timeout: a waiting
    consumer would die now and then. The test run's own layer (one Redis database per test
    process) must keep that setting too."""
    if not os.environ.get("REDIS_URL", "").startswith("redis"):
        pytest.skip("needs Redis: set REDIS_URL=redis://...")
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert layer is not None
    assert [host.get("socket_timeout", "unset") for host in layer.hosts] == [None]
    assert [host["address"] for host in layer.hosts] == [os.environ["REDIS_URL"]]
    probe = run_manage(
        "shell",
        "-c",
        "from channels.layers import get_channel_layer as g; print(g().hosts)",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert "'socket_timeout': None" in probe.stdout, probe.stderr
