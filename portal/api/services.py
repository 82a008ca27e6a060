"""Every write of the REST API: API keys, and the job operations behind the endpoints.

Job operations check what only the API knows (which account a caller may pay from) and then
call the scheduler's services, which do the work in one database transaction each.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from pydantic import ValidationError

from dcp.protocol.credits import to_units
from dcp.protocol.messages import Requirements, describe
from dcp.protocol.verify import replicas
from portal.scheduler import pricing
from portal.scheduler import services as scheduler
from portal.scheduler.errors import SchedulerError
from portal.scheduler.models import Job, JobStatus
from portal.scheduler.services import JobSpec
from portal.users.models import User
from portal.wallet.digests import secret_digest
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import WalletError, validate_label

from . import payers
from .auth import Principal
from .models import ApiKey
from .schemas import JobIn
from .selectors import own_job

# No account holds this much: a larger escrow is refused before it reaches the ledger.
MAX_ESCROW_UNITS = 2**62


# --- API keys -----------------------------------------------------------------------------


@transaction.atomic
def create_api_key(
    *, user: User, label: str, identity_address: str, account_address: str
) -> tuple[ApiKey, str]:
    """A new API key acting as one of the user's identity keys and paying from one account.

    Returns the key and its token: the token is not stored and cannot be shown again.
    """
    label = validate_label(label)
    identity = _own_key(user, KeyKind.IDENTITY, identity_address)
    account = _own_key(user, KeyKind.ACCOUNT, account_address)
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    token = f"dcp_{prefix}_{secret}"
    key = ApiKey.objects.create(
        user=user,
        label=label,
        prefix=prefix,
        digest=secret_digest(token),
        identity=identity,
        account=account,
    )
    return key, token


def _own_key(user: User, kind: KeyKind, address: str) -> Key:
    key = Key.objects.filter(user=user, kind=kind, address=address).first()
    if key is None:
        raise WalletError(f"Choose one of your {KeyKind(kind).label}s.")
    return key


def revoke_api_key(*, user: User, prefix: str) -> ApiKey | None:
    """Revoke one of the user's API keys at once; None when it has none with that prefix."""
    key = ApiKey.objects.filter(user=user, prefix=prefix, revoked_at__isnull=True).first()
    if key is not None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


# --- jobs ---------------------------------------------------------------------------------


def offer_units(offer: Any) -> int:
    """Base units per slice of a `slicePaymentOffer`: a number, or MARKET_VALUE, which for a
    job paid per slice (a verified one) is the portal's MARKET_SLICE_OFFER setting."""
    return to_units(settings.MARKET_SLICE_OFFER if offer == "MARKET_VALUE" else offer)


def market_budget(count: int) -> int:
    """What a MARKET_VALUE job's escrow gets for `count` slices: MARKET_SLICE_OFFER each (it
    pays per CPU-second at the market price out of that; `POST /job/{id}/escrow` adds more)."""
    return to_units(settings.MARKET_SLICE_OFFER) * count


def _require_escrow_fits(offer: int, count: int) -> None:
    if offer * count >= MAX_ESCROW_UNITS:
        raise SchedulerError("ENOFUNDS", "no account holds enough credits to pay for these slices")


def _job_ref(principal: Principal, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return uuid.uuid4().hex
    # Scoped to the identity, so that one caller's key can never name another's job.
    scoped = hashlib.sha256(f"{principal.identity}:{idempotency_key}".encode()).hexdigest()
    return f"rest-{scoped[:40]}"


def job_requirements(body: JobIn) -> dict[str, Any]:
    """The job's requirements with dcp-rest's `packages` in them: names go to `pyodide`,
    wheels to `packages` (EINVALID when the two together break the protocol's limits)."""
    names = [item for item in body.packages if isinstance(item, str)]
    wheels = [item.model_dump() for item in body.packages if not isinstance(item, str)]
    requirements = body.requirements.model_dump(exclude_defaults=True)
    requirements["packages"] = [*requirements.get("packages", []), *wheels]
    requirements["pyodide"] = [*requirements.get("pyodide", []), *names]
    try:
        checked = Requirements.model_validate(requirements)
    except ValidationError as error:
        raise SchedulerError("EINVALID", f"packages: {describe(error)}") from None
    return checked.model_dump(exclude_defaults=True)


def deploy_job(
    *, request: HttpRequest, principal: Principal, body: JobIn, idempotency_key: str | None
) -> tuple[Job, bool]:
    """Deploy an open values job paid from the caller's account; (job, False) on a replay."""
    payer = payers.deploy_payer(request, principal, body.account)
    verify = body.verify.model_dump() if body.verify is not None else None
    at_market = body.slicePaymentOffer == "MARKET_VALUE" and verify is None
    offer = 0 if at_market else offer_units(body.slicePaymentOffer)
    _require_escrow_fits(offer or market_budget(1), len(body.slices) * replicas(verify))
    spec = JobSpec(
        ref=_job_ref(principal, idempotency_key),
        language=body.work.runtime_language,
        source=body.work.function,
        args=body.args,
        input_kind="values",
        values=body.slices,
        is_open=True,
        offer=offer,
        public=body.public.model_dump(exclude_defaults=True),
        requirements=job_requirements(body),
        verify=verify,
        compute_groups=scheduler.credentials(body.computeGroups),
    )
    if at_market:
        spec.cpu_rate, spec.gpu_rate = pricing.market_rates(1.0)
        spec.budget = market_budget(len(body.slices))
    job, created = scheduler.deploy_job(
        owner=principal.user, identity=principal.identity, payer=payer.address, spec=spec
    )
    payers.remember_unlocked(job, payer)
    return job, created


def add_slices(
    *, principal: Principal, job_id: str, values: list[Any], idempotency_key: str | None
) -> tuple[Job, bool]:
    """Append input to an open job, paid by the account that pays for the job."""
    job = own_job(principal, job_id)
    payer = payers.batch_payer(principal, job)
    cost = market_budget(len(values)) if job.cpu_rate else job.offer * len(values) * job.replicas
    _require_escrow_fits(cost, 1)
    return scheduler.add_slices(
        job_id=job.id,
        identity=principal.identity,
        batch_ref=idempotency_key or uuid.uuid4().hex,
        values=values,
        payer=payer,
        max_total=cost,
    )


def add_escrow(
    *, principal: Principal, job_id: str, amount: Any, idempotency_key: str | None
) -> tuple[Job, int]:
    """Add credits to a MARKET_VALUE job's escrow from the job's account; (job, what the
    escrow holds now)."""
    job = own_job(principal, job_id)
    units = to_units(amount)
    _require_escrow_fits(units, 1)
    return scheduler.add_escrow(
        job_id=job.id,
        identity=principal.identity,
        ref=idempotency_key or uuid.uuid4().hex,
        payer=payers.batch_payer(principal, job),
        amount=units,
    )


def close_job(*, principal: Principal, job_id: str) -> tuple[Job, bool]:
    """No more slices; (job, True) when that made the job complete."""
    job = own_job(principal, job_id)
    return scheduler.close_job(job_id=job.id, identity=principal.identity)


def cancel_job(*, principal: Principal, job_id: str, reason: str) -> Job:
    """Cancel a running job and refund its escrow; a job that already finished is ECLOSED."""
    job = own_job(principal, job_id)
    job = scheduler.cancel_job(job_id=job.id, identity=principal.identity, reason=reason)
    if job.status == JobStatus.FINISHED:
        raise SchedulerError("ECLOSED", f"job {job.id} has already finished")
    return job
