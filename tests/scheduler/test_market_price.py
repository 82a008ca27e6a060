"""The market price of a CPU-second: the median of what recent jobs with metered results paid
for a second of their workers' sandboxes, or the portal's default before any job is measured;
the Worker tab shows it beside the minimum wage."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from dcp.protocol.credits import to_units
from portal.scheduler.models import Job
from portal.scheduler.selectors import market_gpu_price, market_price

pytestmark = pytest.mark.django_db


def job_that_paid(
    owner: Any, *, offer: str, computed: int, cpu_seconds: float, **fields: Any
) -> Job:
    return Job.objects.create(
        id=uuid.uuid4().hex,
        ref=uuid.uuid4().hex,
        owner=owner,
        identity="0x" + "1" * 40,
        language="python",
        source="def work(x):\n    return x\n",
        total=computed,
        computed=computed,
        offer=to_units(offer),
        cpu_ms=cpu_seconds * 1000,
        **fields,
    )


def test_before_any_job_is_measured_the_price_is_the_portals_default(settings: Any) -> None:
    settings.MARKET_CPU_SECOND_PRICE = "0.002"
    assert market_price() == (to_units("0.002"), 0)


def test_the_price_is_the_median_of_what_recent_measured_jobs_paid(first_dev: Any) -> None:
    job_that_paid(first_dev, offer="0.01", computed=10, cpu_seconds=10)  # 0.01 a second
    job_that_paid(first_dev, offer="0.01", computed=10, cpu_seconds=50)  # 0.002 a second
    job_that_paid(first_dev, offer="0.03", computed=10, cpu_seconds=100)  # 0.003 a second
    job_that_paid(first_dev, offer="0", computed=10, cpu_seconds=10)  # paid nothing: left out
    old = job_that_paid(first_dev, offer="9", computed=1, cpu_seconds=1)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    assert market_price() == (to_units("0.003"), 3)


def test_a_gpu_second_is_priced_from_the_jobs_with_metered_gpu_time(
    first_dev: Any, settings: Any
) -> None:
    settings.MARKET_GPU_SECOND_PRICE = "0.02"
    assert market_gpu_price() == (to_units("0.02"), 0)
    job_that_paid(first_dev, offer="0.01", computed=10, cpu_seconds=10)  # no GPU: left out
    job_that_paid(first_dev, offer="0.01", computed=10, cpu_seconds=10, gpu_ms=2_000)
    job_that_paid(first_dev, offer="0", computed=4, cpu_seconds=1, gpu_ms=1, gpu_rate=7)
    assert market_gpu_price() == (round((to_units("0.05") + 7) / 2), 2)  # 0.1 over 2 s; 7


def test_the_worker_tab_shows_the_market_price(first_dev: Any, client: Client) -> None:
    job_that_paid(first_dev, offer="0.01", computed=4, cpu_seconds=8)
    client.force_login(first_dev)
    page = client.get("/portal/worker/").content.decode()
    assert "Market value: 0.005 credits per CPU-second" in page
    assert "0.01 per GPU-second" in page  # the default: no job used a GPU
    assert "the median of the last 1 job with measured slices" in page
