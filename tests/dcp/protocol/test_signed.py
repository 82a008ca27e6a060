"""The signed texts and the job hash: what one end signs, the other verifies."""

from __future__ import annotations

import hashlib
import json

from eth_account import Account

from dcp.protocol.signed import (
    batch_cheque_text,
    canonical_json,
    cheque_text,
    deploy_hash,
    job_hash,
    recover_signer,
    session_text,
    sign_text,
)

KEY = Account.create()


def test_the_texts_are_the_documented_ones():
    assert session_text("ab") == "DCP Portal client session\nnonce: ab"
    assert cheque_text("f00", "0.05") == "DCP Portal payment\njob: f00\nmax total: 0.05"
    assert (
        batch_cheque_text("j1", "b-1", "2")
        == "DCP Portal payment\njob: j1\nbatch: b-1\nmax total: 2"
    )


def test_a_signature_recovers_to_its_signer_and_a_bad_one_to_none():
    signature = sign_text(KEY.key, session_text("00"))
    assert recover_signer(session_text("00"), signature) == KEY.address
    assert recover_signer(session_text("01"), signature) != KEY.address
    assert recover_signer(session_text("00"), "0xnot-a-signature") is None


def test_the_deploy_hash_is_sha256_of_the_canonical_frame_fields():
    frame = {
        "type": "deploy",
        "id": 2,
        "ref": "ref-12345",
        "work": {"source": "def work(x):\n    return x\n", "language": "python"},
        "input": {"kind": "range", "start": 1, "end": 3},
        "slice_payment_offer": "0.01",
        "payment": {"max_total": "1"},
    }
    body = {k: frame[k] for k in ("ref", "work", "input", "slice_payment_offer")}
    canonical = json.dumps({**body, "args": []}, sort_keys=True, separators=(",", ":"))
    assert deploy_hash(frame) == hashlib.sha256(canonical.encode()).hexdigest()
    assert deploy_hash(frame) == job_hash(
        ref="ref-12345", work=frame["work"], args=[], input=frame["input"], offer="0.01"
    )


def test_canonical_json_sorts_keys_and_has_no_spaces():
    assert canonical_json({"b": [1, {"d": 2, "c": 3}], "a": "é"}) == (
        '{"a":"\\u00e9","b":[1,{"c":3,"d":2}]}'
    )
