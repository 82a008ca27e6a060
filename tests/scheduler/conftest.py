"""Sockets driven the way Channels' own tests do, plus a signed-in deploying identity."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from eth_account import Account
from eth_account.messages import encode_defunct

from portal.scheduler.consumers import ClientConsumer, WorkerConsumer
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key, private_key_of


@dataclass
class Deployer:
    """A First Dev's identity and account keys, able to sign what the protocol asks for."""

    identity_key: bytes
    account_key: bytes

    @property
    def identity(self) -> str:
        return Account.from_key(self.identity_key).address

    @property
    def account(self) -> str:
        return Account.from_key(self.account_key).address

    def hello(self, nonce: str) -> dict[str, Any]:
        text = f"DCP Portal client session\nnonce: {nonce}"
        signature = Account.sign_message(encode_defunct(text=text), self.identity_key).signature
        return {
            "type": "hello",
            "id": "hello",
            "identity": self.identity,
            "signature": "0x" + signature.hex(),
        }

    def deploy(
        self,
        *,
        input: dict[str, Any],
        source: str = "def work(x):\n    return x * 2\n",
        offer: str = "0.01",
        max_total: str | None = None,
        language: str = "python",
        args: list[Any] | None = None,
        ref: str | None = None,
        verify: dict[str, Any] | None = None,
        market_value: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {
            "ref": ref or uuid.uuid4().hex,
            "work": {"language": language, "source": source},
            "args": args or [],
            "input": input,
            "slice_payment_offer": offer,
        }
        if verify is not None:
            body["verify"] = verify
        if market_value is not None:
            body["market_value"] = market_value
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        max_total = max_total or "1000"
        text = f"DCP Portal payment\njob: {digest}\nmax total: {max_total}"
        signature = Account.sign_message(encode_defunct(text=text), self.account_key).signature
        return {
            "type": "deploy",
            "id": "deploy",
            **body,
            "payment": {
                "account": self.account,
                "max_total": max_total,
                "signature": "0x" + signature.hex(),
            },
        }


@pytest.fixture
def deployer(first_dev: Any) -> Deployer:
    identity = create_key(user=first_dev, kind=KeyKind.IDENTITY, label="laptop")
    account = Key.objects.get(user=first_dev, is_default=True)
    return Deployer(private_key_of(key=identity), private_key_of(key=account))


@pytest.fixture
def volunteer(django_user_model: Any) -> Any:
    """A second user whose worker tab computes slices."""
    return make_volunteer(django_user_model, "grace@example.com")


def make_volunteer(user_model: Any, email: str) -> Any:
    """A signed-up user with a default account key, whose worker tabs compute slices."""
    from portal.wallet.services import ensure_default_account

    person = user_model.objects.create_user(email, "pw-123456789")
    ensure_default_account(user=person)
    return person


async def connect_client(deployer: Deployer | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(ClientConsumer.as_asgi(), "/ws/client/")
    connected, _ = await communicator.connect()
    assert connected
    challenge = await communicator.receive_json_from()
    assert challenge["type"] == "challenge"
    if deployer is not None:
        await communicator.send_json_to(deployer.hello(challenge["nonce"]))
        welcome = await communicator.receive_json_from()
        assert welcome["type"] == "welcome", welcome
    return communicator


async def connect_worker(user: Any, cores: int = 2) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(WorkerConsumer.as_asgi(), "/ws/worker/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "id": 1, "cores": cores})
    welcome = await communicator.receive_json_from()
    assert welcome["type"] == "welcome", welcome
    return communicator


async def receive_until(
    communicator: WebsocketCommunicator, kind: str, timeout: float = 10
) -> dict[str, Any]:
    """The next frame of type `kind` (or event named `kind`), skipping others."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == kind or (frame["type"] == "event" and frame["event"] == kind):
            return frame


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test runs in its own event loop: give it a channel layer of its own, since the
    Redis layer binds its locks and connections to the loop that first used them."""
    from channels.layers import channel_layers

    forget_channel_layer_state()
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


def forget_channel_layer_state() -> None:
    """On Redis, groups outlive a test: the sockets a test left open stay members (of
    `workers` and the rest) and every wake-up would go to all of them. Start each test with
    none (only the layer's own `asgi` keys of the test Redis are removed)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter("asgi*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(autouse=True)
def no_idle_workers_of_other_tests():
    """The idle-worker poller is one per process; a test that leaves a worker socket open
    leaves its consumer waiting in a loop that is gone: forget those between tests."""
    from portal.scheduler.consumers import idle_workers

    yield
    idle_workers.waiting.clear()
    idle_workers.poller = None
