"""Shared fixtures: users and funded accounts, a live portal, and a headless browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from testkit.livesite import CHROMIUM, CHROMIUM_ARGS, WEBGPU_CHROMIUM_ARGS, LiveSite
from testkit.wheels import make_wheel

CORE_PYODIDE_LOCK = (
    Path(__file__).resolve().parents[1] / "worker_static/vendor/pyodide/pyodide-lock.json"
)

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(autouse=True)
def _fast_secrets(settings: Any) -> None:
    # Keystores in unit tests use a light scrypt and passwords a fast hash (PBKDF2's 0.6 s a
    # user made most of a test's setup); the e2e server keeps the real defaults.
    settings.KEYSTORE_SCRYPT_N = 2**10
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _no_sessions_left_on_the_test_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL the test database is dropped at the end, which waits for and then fails on
    connections that threads of the socket tests left open: end them first."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        yield
        return
    request.getfixturevalue("django_db_setup")  # torn down after this fixture
    blocker = request.getfixturevalue("django_db_blocker")
    yield
    from django.db import connection

    with blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def user(db: None) -> Any:
    """A user whose email is verified and who has a default account key."""
    from allauth.account.models import EmailAddress

    from portal.users.models import User
    from portal.wallet.services import ensure_default_account

    person = User.objects.create_user("ada@example.com", PASSWORD)
    EmailAddress.objects.create(user=person, email=person.email, verified=True, primary=True)
    ensure_default_account(user=person)
    return person


@pytest.fixture
def first_dev(user: Any) -> Any:
    """A verified user who joined First Devs: 10 credits in the default account."""
    from portal.users.services import join_first_devs

    join_first_devs(user=user)
    return user


# The Pyodide package the session's portal offers from its package repository (its files are
# not in Pyodide's core, nor on PyPI): `pyodidetoy.triple(n)` is 3n.
PYODIDE_TOY = make_wheel(
    "pyodidetoy", "1.0", {"pyodidetoy/__init__.py": "def triple(n):\n    return 3 * n\n"}
)


@pytest.fixture(scope="session")
def portal_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """One live daphne server on a fresh SQLite database for the whole test session, with a
    Pyodide package repository (PYODIDE_PACKAGES_DIR) that offers PYODIDE_TOY."""
    workdir = tmp_path_factory.mktemp("portal")
    repository = {"PYODIDE_PACKAGES_DIR": str(workdir / "pyodide-packages")}
    site = LiveSite(workdir, extra_env=repository)
    if Path(CORE_PYODIDE_LOCK).is_file():  # built by `make frontend`, as the browser tests need
        wheel = workdir / PYODIDE_TOY[0]
        wheel.write_bytes(PYODIDE_TOY[1])
        site.manage("pyodide_packages", str(wheel))
    site.migrate()
    site.start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="session")
def browser(playwright_driver: Any) -> Iterator[Any]:
    chromium = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def webgpu_browser(playwright_driver: Any) -> Iterator[Any]:
    """Chromium with a real WebGPU adapter (SwiftShader: software, slow, but WebGPU)."""
    chromium = playwright_driver.chromium.launch(
        executable_path=CHROMIUM, args=WEBGPU_CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist every worker process gets a Redis database of its own, as
    pytest-django gives each one its own test database: the tests clear the channel layer's
    keys between tests, which must not reach another process's test in flight."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    redis_url = os.environ.get("REDIS_URL", "")
    if not worker or not redis_url.startswith("redis"):
        return
    parts = urlsplit(redis_url)
    base = int(parts.path.strip("/") or 0)
    own = urlunsplit(parts._replace(path=f"/{base + int(worker.removeprefix('gw'))}"))
    os.environ["REDIS_URL"] = own
    from django.conf import settings

    settings.REDIS_URL = own
    for layer in settings.CHANNEL_LAYERS.values():
        hosts = layer.get("CONFIG", {}).get("hosts", [])
        # Only the address changes: the hosts' other settings (no read timeout) stay.
        for host in hosts:
            host["address"] = own
    for cache in settings.CACHES.values():
        if cache.get("LOCATION") == redis_url:
            cache["LOCATION"] = own


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests are marked e2e and run last: Playwright's sync API keeps an event loop
    running in this thread, and Django refuses ORM calls from a thread with a running loop."""
    browser_dirs = ("/tests/e2e/", "/tests/sandbox/", "/tests/worker_js/")
    for item in items:
        if any(part in str(item.path) for part in browser_dirs):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
