"""The `deploy` request of a job: built once from the protocol's `Deploy` model, then signed.

The cheque signs the job hash of the frame exactly as it is sent, so the frame dict is built
first (from the model: only the fields this job sets), hashed, signed, and then kept: a
redeploy after a reconnect sends the very same frame, and the scheduler answers with the job it
already has.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from ..errors import DCPError
from ..keys.keystore import address_of
from ..protocol.messages import (
    Deploy,
    GroupCredential,
    MarketValue,
    Payment,
    Public,
    Requirements,
    Work,
    describe,
)
from ..protocol.verify import replicas
from . import remote
from .cheques import sign_deploy, total_credits
from .connection import Frame, check_frame_size, frame_of
from .inputs import InputSet, StreamInput

__all__ = ["build_deploy", "first_input"]


def build_deploy(
    *,
    ref: str,
    work: dict[str, str],
    args: list[Any],
    input_wire: dict[str, Any],
    total: int,
    offer: Decimal,
    account_key: bytes,
    options: dict[str, Any],
) -> Frame:
    """The signed `deploy` frame; `total` slices are paid for at `offer` each (times the
    quorum of `verify`), or with `options["market"]` (a MarketValue) per CPU-second from its
    budget; `options` are `progress_timeout`, `open`, `public`, `requirements`, `verify` (a
    protocol `Verify`), `compute_groups` and `market` (the last six sent when set)."""
    slices = len(input_wire["values"]) if input_wire["kind"] == "values" else total
    paid_results = slices * replicas(options.get("verify"))
    try:
        deploy = _deploy_model(
            ref, work, args, input_wire, offer, account_key, paid_results, options
        )
    except ValidationError as exc:
        raise DCPError("EINVALID", f"the job does not fit the protocol: {describe(exc)}") from None
    frame = frame_of(deploy)
    sign_deploy(frame, account_key)
    check_frame_size(frame)
    return frame


def _deploy_model(
    ref: str,
    work: dict[str, str],
    args: list[Any],
    input_wire: dict[str, Any],
    offer: Decimal,
    account_key: bytes,
    paid_results: int,
    options: dict[str, Any],
) -> Deploy:
    market = options.get("market")
    return Deploy(
        type="deploy",
        ref=ref,
        work=Work.model_validate(work),
        args=args,
        input=input_wire,  # type: ignore[arg-type]  # validated into its model
        slice_payment_offer=Decimal(0) if market is not None else offer,
        payment=Payment(
            account=address_of(account_key),
            max_total=market.budget
            if market is not None
            else Decimal(total_credits(offer, paid_results)),
            signature="",
        ),
        progress_timeout=math.ceil(options["progress_timeout"]),
        **_optional_parts(options),
    )


def _optional_parts(options: dict[str, Any]) -> dict[str, Any]:
    """open, public, requirements, verify and compute_groups: sent only when they say
    something."""
    parts: dict[str, Any] = {}
    if options.get("open"):
        parts["open"] = True
    if options.get("public"):
        parts["public"] = Public(**options["public"])
    if options.get("requirements"):
        parts["requirements"] = Requirements.model_validate(options["requirements"])
    if options.get("verify") is not None:
        parts["verify"] = options["verify"]
    if options.get("compute_groups"):
        parts["compute_groups"] = [GroupCredential(**g) for g in options["compute_groups"]]
    if options.get("market") is not None:
        parts["market_value"] = MarketValue(**options["market"].protocol())
    return parts


def first_input(input_set: InputSet, auto_close: bool) -> tuple[dict[str, Any], bool]:
    """The deploy's `input` and whether the job is deployed open; for a streamed input this
    reads the first batch of values from the iterable."""
    if not isinstance(input_set, StreamInput):
        return input_set.wire(), not auto_close
    first = input_set.next_batch(remote.BATCH_VALUES, remote.BATCH_BYTES)
    if not first and auto_close:
        raise DCPError("EINVALID", "the input set is empty: a job needs at least one slice")
    is_open = not (input_set.exhausted and auto_close)
    return {"kind": "values", "values": first}, is_open
