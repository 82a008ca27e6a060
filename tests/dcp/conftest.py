"""Fixtures of the client SDK tests: keys, a DCP home, and a fake scheduler. No Django here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcp import config
from dcp.keys.keystore import address_of

from .fake_scheduler import FakeScheduler, PendingScheduler

IDENTITY_KEY = bytes.fromhex("11" * 32)
ACCOUNT_KEY = bytes.fromhex("22" * 32)
IDENTITY = address_of(IDENTITY_KEY)
ACCOUNT = address_of(ACCOUNT_KEY)
KEYS: dict[str, Any] = {"identity": "0x" + IDENTITY_KEY.hex(), "account": ACCOUNT_KEY}


@pytest.fixture(autouse=True)
def _fast_secrets() -> None:
    """Overrides the autouse fixture of tests/conftest.py: these tests need no Django."""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the person's real keystores, scheduler URL or passphrase."""
    for name in ("DCP_SCHEDULER_URL", "DCP_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DCP_HOMEDIR", os.fspath(tmp_path / "home"))
    monkeypatch.setattr(config, "_configured_url", None)


@pytest.fixture
def keystores() -> None:
    """The identity and account keystores saved in the DCP home, without a passphrase."""
    from dcp.keys import default_keystore_path
    from dcp.keys.keystore import create_keystore, save_keystore_file

    for role, key in (("identity", IDENTITY_KEY), ("account", ACCOUNT_KEY)):
        path = default_keystore_path(role)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_keystore_file(path, create_keystore(key, "", scrypt_n=2**4))


@pytest.fixture
def scheduler() -> Iterator[FakeScheduler]:
    """A fake scheduler that computes `datum * 2` for every slice; dcp.init() points at it."""
    fake = FakeScheduler()
    fake.start()
    config.init(fake.url)
    yield fake
    fake.stop()


@pytest.fixture
def pending(keystores: None) -> Iterator[PendingScheduler]:
    """A fake scheduler whose jobs stay running until cancelled; dcp.init() points at it."""
    fake = PendingScheduler()
    fake.start()
    config.init(fake.url)
    yield fake
    fake.stop()
