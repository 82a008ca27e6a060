"""Basic sign-ins under load: key derivations run off the event loop, in a bounded number of
slots, and other users are answered while they run; attackers are throttled on a live server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from asgiref.testing import ApplicationCommunicator
from django.conf import settings as django_settings
from eth_account import Account

from dcp.keys.keystore import create_keystore
from portal.api import auth
from portal.asgi import application
from portal.wallet.services import export_keystore
from testkit.livesite import LiveSite, read_json

from .conftest import Caller, basic_credentials


class HeldKdf:
    """Wraps the keystore reader: notes the thread each derivation runs on and holds it until
    released, so that a test can act while derivations are in flight."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = auth.read_keystore
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.threads: list[tuple[int, bool]] = []
        monkeypatch.setattr(auth, "read_keystore", self)

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.threads.append((threading.get_ident(), _loop_running()))
        self.entered.release()
        self.release.wait(timeout=60)
        return self.real(*args, **kwargs)

    async def wait_until_entered(self, count: int) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.entered.acquire, timeout=30)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def asgi_get(path: str, authorization: str, timeout: float = 30) -> tuple[int, Any]:
    """GET through the ASGI application daphne serves, from a client at 10.20.30.40."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", authorization.encode())],
        "client": ("10.20.30.40", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout)
    body = b""
    while True:
        chunk = await communicator.receive_output(timeout)
        body += chunk.get("body", b"")
        if not chunk.get("more_body"):
            break
    return start["status"], json.loads(body)


@pytest.fixture
def held_kdf(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldKdf]:
    held = HeldKdf(monkeypatch)
    yield held
    held.release.set()  # whatever the test did, no request thread stays held


@pytest.fixture
def keystores(identity: Any) -> list[dict[str, Any]]:
    """Three exports of one identity key: each a keystore the server has not opened yet."""
    return [export_keystore(key=identity, file_passphrase="pw") for _ in range(3)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_while_every_derivation_slot_is_taken_other_requests_are_answered(
    keystores: list[dict[str, Any]], stranger: Caller, settings: Any, held_kdf: HeldKdf
) -> None:
    settings.BASIC_AUTH_KDF_SLOTS = 2
    settings.BASIC_AUTH_KDF_WAIT_SECONDS = 0
    held = held_kdf
    in_flight = [
        asyncio.create_task(
            asgi_get("/api/v0/jobs", basic_credentials(keystore, "pw"), timeout=300)
        )
        for keystore in keystores[:2]
    ]
    await held.wait_until_entered(2)

    # A third keystore is not opened while both slots are taken: the caller is told to retry.
    status, body = await asgi_get("/api/v0/jobs", basic_credentials(keystores[2], "pw"), timeout=10)
    assert (status, body["error"]["code"]) == (503, "EBUSY")
    # Another user is answered meanwhile.
    status, _ = await asgi_get("/api/v0/jobs", stranger.authorization)
    assert status == 200

    held.release.set()
    assert [(await request)[0] for request in in_flight] == [200, 200]
    # Each derivation ran in its request's own thread, where no event loop runs.
    loop_thread = threading.get_ident()
    assert len({thread for thread, _ in held.threads}) == 2
    assert all(thread != loop_thread and not loop for thread, loop in held.threads)


# --- On a live daphne server -------------------------------------------------------------------

PASSWORD = "correct horse battery staple 42"
ATTACKERS = 8
REQUESTS_EACH = 4

API_KEY_OF_WORKER = """
from portal.api.services import create_api_key
from portal.users.models import User
from portal.wallet.models import Key, KeyKind
user = User.objects.get(email="worker@example.com")
identity = Key.objects.get(user=user, kind=KeyKind.IDENTITY)
account = Key.objects.get(user=user, kind=KeyKind.ACCOUNT, is_default=True)
print(create_api_key(user=user, label="load", identity_address=identity.address,
                     account_address=account.address)[1])
"""


@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """A server of this module's own: its failure counters for 127.0.0.1 start at zero."""
    site = LiveSite(tmp_path_factory.mktemp("throttled"))
    site.migrate()
    site.start()
    yield site
    site.stop()


def test_attackers_are_throttled_while_other_users_keep_being_answered(
    live_site: LiveSite, tmp_path: Path
) -> None:
    live_site.seed(tmp_path, PASSWORD)
    bearer = f"Bearer {live_site.manage('shell', '-c', API_KEY_OF_WORKER)}"
    guesses = [  # wrong passphrases for keystores at the highest scrypt cost Basic accepts
        basic_credentials(create_keystore(bytes(Account.create().key), "pw", scrypt_n=2**15), "no")
        for _ in range(ATTACKERS)
    ]
    # A dcp-rest client signs in with its keystore just before the attack (from the same address).
    signed_in = basic_credentials(read_json(tmp_path / ".dcp" / "id.keystore"), "")
    api = f"{live_site.url}/api/v0/jobs"
    assert requests.get(api, headers={"Authorization": signed_in}, timeout=30).status_code == 200

    def attack(authorization: str) -> list[int]:
        with requests.Session() as session:
            return [
                session.get(api, headers={"Authorization": authorization}, timeout=60).status_code
                for _ in range(REQUESTS_EACH)
            ]

    with ThreadPoolExecutor(ATTACKERS) as pool:
        attacks = [pool.submit(attack, guess) for guess in guesses]
        others = []  # another user's API key and the signed-in client, while the attack runs
        while not others or not all(attack.done() for attack in attacks):
            for authorization in (bearer, signed_in):
                others.append(
                    requests.get(api, headers={"Authorization": authorization}, timeout=30)
                )
        answers = Counter(code for attack in attacks for code in attack.result())

    assert set(answers) <= {401, 429, 503}, answers
    assert answers[429] > 0, answers
    # Keystores stop being opened at the client's limit, give or take those already in flight.
    client_limit, _ = django_settings.BASIC_AUTH_FAILURE_LIMITS["client"]
    assert answers[401] <= client_limit + ATTACKERS, answers
    assert [response.status_code for response in others] == [200] * len(others)
    # The attackers' address stays refused, while the signed-in client goes on.
    again = requests.get(api, headers={"Authorization": guesses[0]}, timeout=30)
    assert again.status_code == 429
    assert requests.get(api, headers={"Authorization": signed_in}, timeout=30).status_code == 200
