"""The Compute groups page: a user's groups with their jobs; create a group, rotate its join
secret (each shown once), take a job out of a group.

Every view filters on `ComputeGroup.owner`, so another user's group answers 404 whatever its
join key. A new secret is rendered in the answer to the POST that made it, never after a
redirect, and that answer is not cached: the secret is stored nowhere but as a digest.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.scheduler import groups
from portal.scheduler.errors import SchedulerError
from portal.scheduler.models import ComputeGroup, Job

from .forms import ComputeGroupForm, first_error
from .views import AuthedRequest

JOBS_SHOWN = 50  # of each group, newest first


@dataclass(frozen=True)
class GroupCard:
    """One group on the page, with its newest jobs."""

    group: ComputeGroup
    jobs: list[Job]
    more: bool


@dataclass(frozen=True)
class Revealed:
    """A join secret just made, shown in this answer only."""

    group: ComputeGroup
    secret: str


def _cards(request: AuthedRequest) -> list[GroupCard]:
    cards = []
    for group in ComputeGroup.objects.filter(owner=request.user).order_by("-created_at"):
        jobs = list(group.jobs.order_by("-created_at")[: JOBS_SHOWN + 1])
        cards.append(GroupCard(group=group, jobs=jobs[:JOBS_SHOWN], more=len(jobs) > JOBS_SHOWN))
    return cards


def _page(request: AuthedRequest, revealed: Revealed | None = None) -> HttpResponse:
    context = {"tab": "compute_groups", "cards": _cards(request), "revealed": revealed}
    response = render(request, "web/compute_groups.html", context)
    if revealed is not None:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def compute_groups(request: AuthedRequest) -> HttpResponse:
    return _page(request)


@login_required
@require_POST
def create(request: AuthedRequest) -> HttpResponse:
    form = ComputeGroupForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form))
        return redirect("compute_groups")
    try:
        group, secret = groups.create_group(owner=request.user, name=form.cleaned_data["name"])
    except SchedulerError as error:
        messages.error(request, error.message)
        return redirect("compute_groups")
    messages.success(request, f"Compute group {group.name} created.")
    return _page(request, Revealed(group=group, secret=secret))


@login_required
@require_POST
def rotate_secret(request: AuthedRequest, join_key: str) -> HttpResponse:
    group = get_object_or_404(ComputeGroup, owner=request.user, join_key=join_key)
    secret = groups.rotate_secret(group=group)
    messages.success(request, f"Compute group {group.name} has a new join secret.")
    return _page(request, Revealed(group=group, secret=secret))


@login_required
@require_POST
def remove_job(request: AuthedRequest, join_key: str, job_id: str) -> HttpResponse:
    group = get_object_or_404(ComputeGroup, owner=request.user, join_key=join_key)
    try:
        removal = groups.remove_job(group=group, job_id=job_id)
    except SchedulerError:
        return HttpResponse(status=404)
    cancelled = " It was in no other group, so it is cancelled." if removal.cancelled else ""
    messages.success(request, f"Job {removal.job.name} removed from {group.name}.{cancelled}")
    return redirect("compute_groups")
