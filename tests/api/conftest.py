"""A First Dev with an identity key and an API key, a client without cookies, a worker."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from portal.api.services import create_api_key
from portal.scheduler import services as scheduler
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key, export_keystore


@dataclass
class Caller:
    """A test client that sends one Authorization header with every request."""

    client: Client
    authorization: str

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        headers = {"Authorization": self.authorization, **headers}
        data = json.dumps(body) if body is not None and not isinstance(body, str | bytes) else body
        return self.client.generic(
            method, path, data=data or "", content_type="application/json", headers=headers
        )

    def get(self, path: str, **headers: str) -> Any:
        return self.client.get(path, headers={"Authorization": self.authorization, **headers})

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.request("POST", path, body, **headers)

    def delete(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.request("DELETE", path, body, **headers)


@pytest.fixture
def identity(first_dev: Any) -> Key:
    return create_key(user=first_dev, kind=KeyKind.IDENTITY, label="laptop")


@pytest.fixture
def account(first_dev: Any) -> Key:
    return Key.objects.get(user=first_dev, kind=KeyKind.ACCOUNT, is_default=True)


@pytest.fixture
def api_token(first_dev: Any, identity: Key, account: Key) -> str:
    _, token = create_api_key(
        user=first_dev,
        label="ci",
        identity_address=identity.address,
        account_address=account.address,
    )
    return token


@pytest.fixture
def bearer(api_token: str) -> Caller:
    return Caller(Client(), f"Bearer {api_token}")


def basic_credentials(keystore: dict[str, Any] | str, passphrase: str) -> str:
    text = keystore if isinstance(keystore, str) else json.dumps(keystore)
    return "Basic " + base64.b64encode(f"{text}:{passphrase}".encode()).decode()


@pytest.fixture
def basic(identity: Key) -> Caller:
    keystore = export_keystore(key=identity, file_passphrase="open sesame")
    return Caller(Client(), basic_credentials(keystore, "open sesame"))


@pytest.fixture
def stranger(django_user_model: Any) -> Caller:
    """Another First Dev with an API key of their own."""
    from portal.users.services import join_first_devs
    from portal.wallet.services import ensure_default_account

    person = django_user_model.objects.create_user("eve@example.com")
    account = ensure_default_account(user=person)
    join_first_devs(user=person)
    identity = create_key(user=person, kind=KeyKind.IDENTITY, label="eve")
    _, token = create_api_key(
        user=person, label="eve", identity_address=identity.address, account_address=account.address
    )
    return Caller(Client(), f"Bearer {token}")


@pytest.fixture
def volunteer(django_user_model: Any) -> Any:
    """A second user whose worker tab computes slices."""
    from portal.wallet.services import ensure_default_account

    person = django_user_model.objects.create_user("grace@example.com")
    ensure_default_account(user=person)
    return person


def compute(job_id: str, payee: Any, worker: str = "w-test", double: bool = True) -> list[int]:
    """Stand in for a worker tab: lease the job's waiting slices and return x*2, task after task
    (a MARKET_VALUE job hands out its estimation slices first) until none is left."""
    from portal.wallet.services import ensure_default_account

    done: list[int] = []
    while (task := scheduler.claim_slices(worker=worker, limit=100_000)) is not None:
        assert task.job.id == job_id
        results = [(n, datum * 2 if double else datum) for n, datum in task.slices]
        scheduler.record_results(
            worker=worker,
            payee=payee,
            payee_address=ensure_default_account(user=payee).address,
            job_id=job_id,
            results=results,
            errors=[],
            batch_key=f"pay:{job_id}:{worker}:{task.slices[0][0]}",
        )
        done += [n for n, _ in results]
    return done


def error_of(response: Any) -> dict[str, str]:
    """The error object of a refused request, checking the shape every error has."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]
