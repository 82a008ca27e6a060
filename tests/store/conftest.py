"""Two First Devs with identity keys, and the store in a folder of the test's own."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from dcp.protocol.signed import sign_text, upload_text
from portal.api.services import create_api_key
from portal.users.models import User
from portal.users.services import join_first_devs
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key, ensure_default_account, private_key_of

# What the tests of workers' uploads share with the scheduler's: a deploying First Dev, a
# volunteer, and a channel layer of each test's own.
from tests.scheduler.conftest import (  # noqa: F401 - fixtures, found by name
    deployer,
    fresh_channel_layer,
    no_idle_workers_of_other_tests,
    volunteer,
)


@dataclass
class Person:
    """A First Dev with an identity key, who stores objects with signed uploads."""

    user: User
    identity: Key
    client: Client

    @property
    def private_key(self) -> bytes:
        return private_key_of(key=self.identity)

    def signature(self, sha256: str, size: int, expires: float | None = None) -> dict[str, str]:
        """The headers of an upload signed by this person's identity key."""
        when = int(expires if expires is not None else time.time() + 300)
        return {
            "X-DCP-Identity": self.identity.address,
            "X-DCP-Expires": str(when),
            "X-DCP-Signature": sign_text(self.private_key, upload_text(sha256, size, when)),
        }

    def put(self, data: bytes, sha256: str | None = None, **headers: Any) -> Any:
        """PUT /store/<sha256 of data> with a signature, unless headers are given."""
        name = sha256 or digest(data)
        sent = headers or self.signature(name, len(data))
        return self.client.generic(
            "PUT", f"/store/{name}", data, "application/octet-stream", headers=sent
        )

    def api_key(self) -> str:
        account = Key.objects.get(user=self.user, kind=KeyKind.ACCOUNT, is_default=True)
        _, token = create_api_key(
            user=self.user,
            label="uploads",
            identity_address=self.identity.address,
            account_address=account.address,
        )
        return token


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def first_dev_named(email: str) -> Person:
    user = User.objects.create_user(email, "a long enough password 42")
    ensure_default_account(user=user)
    join_first_devs(user=user)
    user.refresh_from_db()
    identity = create_key(user=user, kind=KeyKind.IDENTITY, label="laptop")
    return Person(user=user, identity=identity, client=Client(enforce_csrf_checks=True))


@pytest.fixture(autouse=True)
def store_dir(settings: Any, tmp_path: Path) -> Path:
    settings.STORE_DIR = tmp_path / "store"
    return Path(settings.STORE_DIR)


@pytest.fixture
def ada(db: None) -> Person:
    return first_dev_named("ada@example.com")


@pytest.fixture
def bob(db: None) -> Person:
    return first_dev_named("bob@example.com")
