"""The `dcp` command: `dcp keys` and `dcp --version`."""

from __future__ import annotations

import pytest

import dcp
from dcp.cli import main
from dcp.keys import default_keystore_path
from dcp.keystore import address_of, create_keystore, save_keystore_file

from .conftest import ACCOUNT_KEY, IDENTITY_KEY

pytestmark: list[pytest.MarkDecorator] = []


def test_keys_lists_addresses_without_asking_passphrases(capsys, monkeypatch):
    monkeypatch.setattr("getpass.getpass", pytest.fail)
    for role, key in (("identity", IDENTITY_KEY), ("account", ACCOUNT_KEY)):
        path = default_keystore_path(role)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_keystore_file(path, create_keystore(key, "secret", scrypt_n=2**4))
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    assert f"account   {address_of(ACCOUNT_KEY)}" in out
    assert f"identity  {address_of(IDENTITY_KEY)}" in out


def test_keys_says_what_is_missing_and_where_to_get_it(capsys):
    assert main(["keys"]) == 1
    err = capsys.readouterr().err
    assert "no identity keystore at" in err
    assert "/portal/first-devs/" in err
    assert "/portal/accounts/" in err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"dcp {dcp.__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "keys" in capsys.readouterr().out
