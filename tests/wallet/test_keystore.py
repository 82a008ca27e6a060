"""Tests for dcp.keys.keystore: V3 keystores are written, read, and hostile ones refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcp.keys.keystore import (
    SECP256K1_ORDER,
    KeystoreError,
    address_of,
    create_keystore,
    keystore_address,
    load_keystore_file,
    read_keystore,
    save_keystore_file,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "keystore_basic_tests.json").read_text())
KEY = bytes.fromhex("7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d")
FAST_N = 2**4  # scrypt n small enough for tests to stay quick


@pytest.fixture(scope="module")
def keystore() -> dict[str, Any]:
    """A cheap keystore for KEY under the passphrase 'hunter2'."""
    return create_keystore(KEY, "hunter2", scrypt_n=FAST_N)


def edited(keystore: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of keystore with the dotted path set to value (or removed if value is ...)."""
    result = copy.deepcopy(keystore)
    *parents, leaf = path.split(".")
    target = result
    for name in parents:
        target = target[name]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return result


# --------------------------------------------------------------------------- round trips


def test_created_keystore_reads_back_to_the_same_key() -> None:
    keystore = create_keystore(KEY, "correct horse")
    assert read_keystore(keystore, "correct horse") == KEY


def test_created_keystore_has_the_v3_shape(keystore: dict[str, Any]) -> None:
    crypto = keystore["crypto"]
    assert keystore["version"] == 3
    assert len(keystore["id"]) == 36
    assert crypto["cipher"] == "aes-128-ctr"
    assert crypto["kdf"] == "scrypt"
    assert crypto["kdfparams"]["dklen"] == 32
    assert len(bytes.fromhex(crypto["kdfparams"]["salt"])) == 32
    assert len(bytes.fromhex(crypto["cipherparams"]["iv"])) == 16
    assert "label" not in keystore


def test_created_keystore_decrypts_with_eth_account() -> None:
    keystore = create_keystore(KEY, "correct horse")
    assert bytes(Account.decrypt(json.dumps(keystore), "correct horse")) == KEY


def test_address_field_is_lowercase_hex_without_prefix(keystore: dict[str, Any]) -> None:
    assert keystore["address"] == Account.from_key(KEY).address[2:].lower()


def test_label_is_stored_when_given() -> None:
    keystore = create_keystore(KEY, "", label="default", scrypt_n=FAST_N)
    assert keystore["label"] == "default"


def test_empty_passphrase_is_allowed() -> None:
    keystore = create_keystore(KEY, "", scrypt_n=FAST_N)
    assert read_keystore(keystore, "") == KEY


def test_keystore_reads_from_json_text_and_bytes(keystore: dict[str, Any]) -> None:
    text = json.dumps(keystore)
    assert read_keystore(text, "hunter2") == KEY
    assert read_keystore(text.encode(), "hunter2") == KEY


def test_capitalised_crypto_key_is_accepted(keystore: dict[str, Any]) -> None:
    legacy = edited(keystore, "crypto", ...)
    legacy["Crypto"] = keystore["crypto"]
    assert read_keystore(legacy, "hunter2") == KEY


def test_keystore_without_address_still_reads(keystore: dict[str, Any]) -> None:
    assert read_keystore(edited(keystore, "address", ...), "hunter2") == KEY


def test_saved_file_loads_back_and_is_private(tmp_path: Path, keystore: dict[str, Any]) -> None:
    path = save_keystore_file(tmp_path / "id.keystore", keystore)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_keystore(load_keystore_file(path), "hunter2") == KEY


def test_saving_over_an_existing_file_is_refused(tmp_path: Path, keystore: dict[str, Any]) -> None:
    path = save_keystore_file(tmp_path / "id.keystore", keystore)
    with pytest.raises(KeystoreError, match="already exists"):
        save_keystore_file(path, keystore)
    save_keystore_file(path, keystore, overwrite=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=st.integers(min_value=1, max_value=SECP256K1_ORDER - 1),
    passphrase=st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
)
def test_any_valid_key_and_passphrase_round_trip(secret: int, passphrase: str) -> None:
    key = secret.to_bytes(32, "big")
    assert read_keystore(create_keystore(key, passphrase, scrypt_n=FAST_N), passphrase) == key


# --------------------------------------------------------------------------- official vectors


@pytest.mark.parametrize("name", ["test1", "test2"])
def test_official_v3_vectors_decrypt_to_their_private_key(name: str) -> None:
    vector = VECTORS[name]
    assert read_keystore(vector["json"], vector["password"]).hex() == vector["priv"]


# --------------------------------------------------------------------------- addresses


def test_address_of_gives_the_checksummed_address() -> None:
    assert address_of(KEY) == Account.from_key(KEY).address


def test_keystore_address_reads_the_field_without_decrypting(keystore: dict[str, Any]) -> None:
    assert keystore_address(keystore) == Account.from_key(KEY).address


def test_keystore_address_without_address_field_is_an_error(keystore: dict[str, Any]) -> None:
    with pytest.raises(KeystoreError, match="no 'address'"):
        keystore_address(edited(keystore, "address", ...))


def test_keystore_address_with_malformed_address_is_an_error(keystore: dict[str, Any]) -> None:
    with pytest.raises(KeystoreError, match="malformed 'address'"):
        keystore_address(edited(keystore, "address", "12zz"))


# --------------------------------------------------------------------------- refusals


def test_wrong_passphrase_is_refused(keystore: dict[str, Any]) -> None:
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        read_keystore(keystore, "hunter3")


def test_tampered_ciphertext_is_refused(keystore: dict[str, Any]) -> None:
    ciphertext = bytearray.fromhex(keystore["crypto"]["ciphertext"])
    ciphertext[0] ^= 1
    tampered = edited(keystore, "crypto.ciphertext", ciphertext.hex())
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        read_keystore(tampered, "hunter2")


def test_address_not_matching_the_key_is_refused(keystore: dict[str, Any]) -> None:
    other = edited(keystore, "address", "11" * 20)
    with pytest.raises(KeystoreError, match="does not match"):
        read_keystore(other, "hunter2")


def test_error_messages_never_contain_the_key_or_passphrase(keystore: dict[str, Any]) -> None:
    for bad in (edited(keystore, "address", "11" * 20), keystore):
        with pytest.raises(KeystoreError) as caught:
            read_keystore(bad, "hunter3" if bad is keystore else "hunter2")
        assert KEY.hex() not in str(caught.value)
        assert "hunter" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        # 2**40 would need 128 TiB: these can only pass if the cap is checked first.
        ("n", 2**40, "scrypt n=1099511627776"),
        ("r", 2**20, "scrypt r=1048576"),
        ("p", 2**30, "scrypt p=1073741824"),
    ],
)
def test_scrypt_parameters_above_the_cap_are_refused_before_deriving(
    keystore: dict[str, Any], field: str, value: int, detail: str
) -> None:
    hostile = edited(keystore, f"crypto.kdfparams.{field}", value)
    with pytest.raises(KeystoreError, match="exceed the allowed cap") as caught:
        read_keystore(hostile, "hunter2")
    assert detail in str(caught.value)


def test_scrypt_work_above_the_cap_is_refused(keystore: dict[str, Any]) -> None:
    hostile = copy.deepcopy(keystore)
    hostile["crypto"]["kdfparams"].update(n=2**18, r=8, p=16)  # each within its own cap
    with pytest.raises(KeystoreError, match=r"n\*r\*p"):
        read_keystore(hostile, "hunter2")


def test_scrypt_caps_are_configurable(keystore: dict[str, Any]) -> None:
    with pytest.raises(KeystoreError, match="exceed the allowed cap"):
        read_keystore(keystore, "hunter2", max_scrypt_n=2**3)


def test_pbkdf2_iterations_above_the_cap_are_refused() -> None:
    hostile = edited(VECTORS["test1"]["json"], "crypto.kdfparams.c", 2**40)
    with pytest.raises(KeystoreError, match="pbkdf2 c=1099511627776"):
        read_keystore(hostile, "testpassword")


def test_dklen_other_than_32_is_refused(keystore: dict[str, Any]) -> None:
    with pytest.raises(KeystoreError, match="dklen"):
        read_keystore(edited(keystore, "crypto.kdfparams.dklen", 64), "hunter2")


def test_scrypt_n_that_is_not_a_power_of_two_is_refused(keystore: dict[str, Any]) -> None:
    with pytest.raises(KeystoreError, match="power of 2"):
        read_keystore(edited(keystore, "crypto.kdfparams.n", 1000), "hunter2")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("version", 2, "unsupported keystore version 2"),
        ("version", "3", "unsupported keystore version '3'"),
        ("version", ..., "missing 'version'"),
        ("crypto", ..., "missing 'crypto'"),
        ("crypto", "abc", "'crypto' must be an object"),
        ("crypto.cipher", "aes-256-gcm", "unsupported cipher 'aes-256-gcm'"),
        ("crypto.cipher", ..., "missing 'crypto.cipher'"),
        ("crypto.cipherparams", ..., "missing 'crypto.cipherparams'"),
        ("crypto.cipherparams.iv", "00" * 8, "must be 16 bytes"),
        ("crypto.ciphertext", "zz" * 32, "malformed hex in 'crypto.ciphertext'"),
        ("crypto.ciphertext", "abc", "malformed hex"),
        ("crypto.ciphertext", 12, "malformed hex"),
        ("crypto.ciphertext", "00" * 31, "must be 32 bytes"),
        ("crypto.mac", ..., "missing 'crypto.mac'"),
        ("crypto.kdf", "argon2", "unsupported kdf 'argon2'"),
        ("crypto.kdf", ..., "missing 'crypto.kdf'"),
        ("crypto.kdfparams", ..., "missing 'crypto.kdfparams'"),
        ("crypto.kdfparams.salt", "", "must be 1 to"),
        ("crypto.kdfparams.salt", " 00", "malformed hex"),
        ("crypto.kdfparams.n", "16", "must be an integer"),
        ("crypto.kdfparams.n", 16.0, "must be an integer"),
        ("crypto.kdfparams.r", True, "must be an integer"),
        ("crypto.kdfparams.p", ..., "missing 'crypto.kdfparams.p'"),
        ("address", "0x1234", "malformed 'address'"),
    ],
)
def test_malformed_keystore_is_refused_with_a_clear_message(
    keystore: dict[str, Any], path: str, value: object, message: str
) -> None:
    with pytest.raises(KeystoreError, match=message.replace("*", r"\*")) as caught:
        read_keystore(edited(keystore, path, value), "hunter2")
    assert message in str(caught.value)


def test_unsupported_pbkdf2_prf_is_refused() -> None:
    hostile = edited(VECTORS["test1"]["json"], "crypto.kdfparams.prf", "hmac-md5")
    with pytest.raises(KeystoreError, match="unsupported pbkdf2 prf"):
        read_keystore(hostile, "testpassword")


@pytest.mark.parametrize("data", ["not json", b"\xff\xfe", "[1, 2]", "3", "", b"{"])
def test_input_that_is_not_a_json_object_is_refused(data: str | bytes) -> None:
    with pytest.raises(KeystoreError, match=r"not valid JSON|expected a JSON object"):
        read_keystore(data, "x")


def test_oversized_json_is_refused_without_parsing() -> None:
    with pytest.raises(KeystoreError, match="too large"):
        read_keystore("{" + " " * 100_000 + "}", "x")


def test_missing_keystore_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="keystore file not found"):
        load_keystore_file(tmp_path / "nope.keystore")


def test_keystore_file_with_invalid_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.keystore"
    path.write_text("{not json")
    with pytest.raises(KeystoreError, match="not valid JSON"):
        load_keystore_file(path)


@pytest.mark.parametrize(
    "key",
    [b"", b"\x01" * 31, b"\x00" * 32, SECP256K1_ORDER.to_bytes(32, "big"), b"\xff" * 32],
)
def test_creating_a_keystore_for_an_invalid_key_is_refused(key: bytes) -> None:
    with pytest.raises(KeystoreError, match="private key"):
        create_keystore(key, "x", scrypt_n=FAST_N)


def test_creating_with_a_bad_scrypt_n_is_refused() -> None:
    with pytest.raises(KeystoreError, match="power of 2"):
        create_keystore(KEY, "x", scrypt_n=1000)
