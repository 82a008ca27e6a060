"""Finding and unlocking keys: the DCP home, passphrase order, and helpful errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import dcp
from dcp.keys import default_keystore_path, signing, signing_key
from dcp.keys.keystore import address_of, create_keystore, save_keystore_file

from .conftest import ACCOUNT_KEY, IDENTITY_KEY

pytestmark: list[pytest.MarkDecorator] = []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def keystore(key: bytes, passphrase: str = "") -> dict:
    return create_keystore(key, passphrase, scrypt_n=2**4)


def save(path: Path, key: bytes, passphrase: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_keystore_file(path, keystore(key, passphrase))


@pytest.fixture(autouse=True)
def _no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", NotATerminal())
    monkeypatch.setattr(signing, "_default_keystores", {})


def test_the_dcp_home_is_under_dcp_homedir(tmp_path, monkeypatch):
    monkeypatch.setenv("DCP_HOMEDIR", str(tmp_path))
    assert default_keystore_path("identity") == tmp_path / ".dcp" / "id.keystore"
    assert default_keystore_path("account") == tmp_path / ".dcp" / "default.keystore"


def test_default_keystores_with_an_empty_passphrase_need_nothing_else():
    save(default_keystore_path("identity"), IDENTITY_KEY)
    save(default_keystore_path("account"), ACCOUNT_KEY)
    assert signing_key(None, "identity") == IDENTITY_KEY
    assert signing_key(None, "account") == ACCOUNT_KEY


def test_dcp_passphrase_is_tried_after_the_empty_one(monkeypatch):
    save(default_keystore_path("identity"), IDENTITY_KEY, "s3cret")
    monkeypatch.setenv("DCP_PASSPHRASE", "s3cret")
    monkeypatch.setattr("getpass.getpass", pytest.fail)  # never asked when the env has it
    assert signing_key(None, "identity") == IDENTITY_KEY


def test_a_terminal_is_asked_last(monkeypatch):
    save(default_keystore_path("identity"), IDENTITY_KEY, "typed")
    monkeypatch.setenv("DCP_PASSPHRASE", "wrong")
    monkeypatch.setattr("sys.stdin", Terminal())
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    monkeypatch.setattr("getpass.getpass", ask)
    assert signing_key(None, "identity") == IDENTITY_KEY
    assert len(prompts) == 1
    assert "id.keystore" in prompts[0]


def test_a_wrong_passphrase_everywhere_is_ebadpassphrase(monkeypatch):
    save(default_keystore_path("account"), ACCOUNT_KEY, "right")
    monkeypatch.setenv("DCP_PASSPHRASE", "wrong")
    with pytest.raises(dcp.DCPError, match=r"wrong passphrase for keystore .*DCP_PASSPHRASE") as e:
        signing_key(None, "account")
    assert e.value.code == "EBADPASSPHRASE"


def test_a_missing_identity_keystore_says_where_to_get_one():
    dcp.init("https://portal.example.org")
    path = default_keystore_path("identity")
    with pytest.raises(dcp.DCPError) as caught:
        signing_key(None, "identity")
    assert caught.value.code == "ENOKEYSTORE"
    assert caught.value.message == (
        f"no identity keystore at {path}: create an identity key on the First Devs tab of the "
        "portal (https://portal.example.org/portal/first-devs/) and save it there"
    )


def test_a_missing_account_keystore_points_at_the_accounts_tab():
    with pytest.raises(dcp.DCPError, match=r"default\.keystore.*Accounts tab") as caught:
        signing_key(None, "account")
    assert "http://127.0.0.1:8000/portal/accounts/" in caught.value.message


def test_a_key_may_be_a_path_a_dict_a_keystore_or_raw_hex(tmp_path):
    path = save(tmp_path / "mine.keystore", ACCOUNT_KEY)
    assert signing_key(str(path), "account") == ACCOUNT_KEY
    assert signing_key(path, "account") == ACCOUNT_KEY
    assert signing_key(json.loads(path.read_text()), "account") == ACCOUNT_KEY
    assert signing_key(dcp.Keystore.load(path), "account") == ACCOUNT_KEY
    assert signing_key("0x" + ACCOUNT_KEY.hex(), "account") == ACCOUNT_KEY
    assert signing_key(ACCOUNT_KEY, "account") == ACCOUNT_KEY


def test_a_keystore_reads_its_address_without_a_passphrase(tmp_path):
    path = save(tmp_path / "locked.keystore", IDENTITY_KEY, "never asked")
    assert dcp.Keystore.load(path).address == address_of(IDENTITY_KEY)
    assert dcp.Keystore.load(path).private_key("never asked") == IDENTITY_KEY


def test_a_broken_keystore_or_key_is_reported_plainly(tmp_path):
    broken = tmp_path / "broken.keystore"
    broken.write_text("{not json")
    with pytest.raises(dcp.DCPError, match="not valid JSON") as caught:
        signing_key(broken, "account")
    assert caught.value.code == "EBADKEYSTORE"
    with pytest.raises(dcp.DCPError, match="ENOKEYSTORE"):
        signing_key(tmp_path / "absent.keystore", "account")
    with pytest.raises(dcp.DCPError, match="32 bytes"):
        signing_key(b"short", "account")
    with pytest.raises(dcp.DCPError, match="not int"):
        signing_key(42, "account")  # type: ignore[arg-type]
