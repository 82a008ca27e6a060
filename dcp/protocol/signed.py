"""The texts that keys sign, and the job hash a payment cheque covers.

A cheque lets the scheduler move `offer x slices` credits (times the quorum, for a job that
asks for verification) from an account into the job's escrow. It signs the job hash, the hex
SHA-256 of the canonical JSON (sorted keys, no spaces) of `{ref, work, args, input,
slice_payment_offer}` (and `verify`, when the job asks for it) exactly as the client sent them,
and the most the job may cost. Both ends build these texts here, so a signature made by one
verifies on the other.

An upload to the portal's store (`PUT /store/<sha256>`) may be signed by an identity key
instead of carrying an API key: the signature covers the object's hash, its size and when the
signature expires, so it stores those bytes for that identity's user and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

# How long the client's upload signatures last, and the furthest ahead the portal accepts one
# to expire (more than the client asks for: the two clocks may differ).
UPLOAD_SIGNATURE_SECONDS = 600
MAX_UPLOAD_SIGNATURE_SECONDS = 3600


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the form both sides hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def job_hash(
    *,
    ref: Any,
    work: Any,
    args: Any,
    input: Any,
    offer: Any,
    verify: Any = None,
    market_value: Any = None,
) -> str:
    """Hex SHA-256 of the canonical JSON of what the cheque pays for (`verify` only when the
    job asks for verification: it multiplies what the escrow holds; `market_value` only when
    the job pays per CPU-second)."""
    job = {"ref": ref, "work": work, "args": args, "input": input, "slice_payment_offer": offer}
    if verify is not None:
        job["verify"] = verify
    if market_value is not None:
        job["market_value"] = market_value
    return hashlib.sha256(canonical_json(job).encode("utf-8")).hexdigest()


def deploy_hash(deploy: dict[str, Any]) -> str:
    """The job hash of a `deploy` frame, read off the frame as it came over the wire."""
    return job_hash(
        ref=deploy.get("ref"),
        work=deploy.get("work"),
        args=deploy.get("args", []),
        input=deploy.get("input"),
        offer=deploy.get("slice_payment_offer"),
        verify=deploy.get("verify"),
        market_value=deploy.get("market_value"),
    )


def session_text(nonce: str) -> str:
    """The text an identity key signs to answer the scheduler's challenge."""
    return f"DCP Portal client session\nnonce: {nonce}"


def cheque_text(job_hash_hex: str, max_total: str) -> str:
    """The text an account key signs to authorise paying for a job."""
    return f"DCP Portal payment\njob: {job_hash_hex}\nmax total: {max_total}"


def batch_cheque_text(job_id: str, batch_ref: str, max_total: str) -> str:
    """The text an account key signs to pay for one batch of slices added to an open job."""
    return f"DCP Portal payment\njob: {job_id}\nbatch: {batch_ref}\nmax total: {max_total}"


def upload_text(sha256: str, size: int, expires: int) -> str:
    """The text an identity key signs to store an object (`expires`: unix seconds)."""
    return f"DCP Portal upload\nsha256: {sha256}\nsize: {size}\nexpires: {expires}"


def sign_text(private_key: bytes, text: str) -> str:
    """Sign `text` as an EIP-191 personal message; returns the 0x-prefixed signature."""
    signed = Account.sign_message(encode_defunct(text=text), private_key=private_key)
    return "0x" + bytes(signed.signature).hex()


def recover_signer(text: str, signature: str) -> str | None:
    """The checksummed address whose key signed `text` (EIP-191), or None for a bad signature."""
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    except Exception:  # a malformed signature of any kind is just a bad signature
        return None
