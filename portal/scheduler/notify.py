"""The one place that announces what happened to jobs: to their clients and to the workers.

Services call these functions; nothing goes out before the transaction that made the change
commits, and one transaction's announcements go out together, in the order they were made, in
one trip to the channel layer (so a batch of results costs one trip, not one per slice). The
messages are the channel layer's: `job.event` to a job's group (clients watching it; several
in a row travel as one `job.events`),
`work.available` and `job.abort` to every worker, `worker.suspended` to one user's workers,
`worker.token_revoked` to the workers of one worker token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

if TYPE_CHECKING:
    from .models import Job

log = logging.getLogger(__name__)
WORKERS_GROUP = "workers"
WORK_AVAILABLE = {"type": "work.available"}


def user_workers_group(user_id: int) -> str:
    """The channel-layer group of one user's worker tabs."""
    return f"workers.{user_id}"


def token_workers_group(token_id: int) -> str:
    """The channel-layer group of the workers that said hello with one worker token."""
    return f"workers.token.{token_id}"


def job_group(job_id: str) -> str:
    """The channel-layer group of the clients watching a job."""
    return f"job.{job_id}"


@dataclass(frozen=True)
class Send:
    """A message to every member of a group."""

    group: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Join:
    """A channel joins a group (a deploying connection watches its new job)."""

    group: str
    channel: str


Announcement = Send | Join


@dataclass
class Outbox:
    """One transaction's announcements; called once, when that transaction commits."""

    items: list[Announcement] = field(default_factory=list)

    def __call__(self) -> None:
        async_to_sync(deliver)(self.items)


async def deliver(items: list[Announcement]) -> None:
    """Hand announcements to the channel layer, in order."""
    layer = get_channel_layer()
    for item in merged(items):
        if isinstance(item, Join):
            await layer.group_add(item.group, item.channel)
        else:
            await layer.group_send(item.group, item.message)


def merged(items: list[Announcement]) -> list[Announcement]:
    """Consecutive events for one job's clients travel as one `job.events` message: one trip,
    and their order cannot change on the way (the Redis layer orders a channel's messages by
    the time each was sent, so two sent in the same instant may swap)."""
    out: list[Announcement] = []
    for item in items:
        last = out[-1] if out else None
        if (
            isinstance(item, Send)
            and isinstance(last, Send)
            and item.message["type"] == "job.event"
            and last.group == item.group
            and last.message["type"] in ("job.event", "job.events")
        ):
            earlier = last.message.get("events") or [last.message]
            out[-1] = Send(item.group, {"type": "job.events", "events": [*earlier, item.message]})
        else:
            out.append(item)
    return out


def announce(*items: Announcement) -> None:
    """Queue announcements for when the current transaction commits (at once outside one)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        transaction.on_commit(Outbox(list(items)), robust=True)
        return
    outbox = getattr(connection, "scheduler_outbox", None)
    if outbox is None or not _pending(connection, outbox):
        outbox = Outbox()
        connection.scheduler_outbox = outbox  # type: ignore[attr-defined]
        transaction.on_commit(outbox, robust=True)
    outbox.items.extend(items)


def _pending(connection: Any, outbox: Outbox) -> bool:
    """Whether `outbox` is the last thing this transaction runs on commit, registered at this
    savepoint: else a new one keeps the order (and a rolled-back savepoint drops its own)."""
    if not connection.run_on_commit:
        return False
    savepoints, func, _ = connection.run_on_commit[-1]
    return func is outbox and savepoints == set(connection.savepoint_ids)


def event(job_id: str, name: str, data: Any) -> Send:
    """A `job.event` for the clients watching the job."""
    message = {"type": "job.event", "job": job_id, "event": name, "data": data}
    return Send(job_group(job_id), message)


# --- what services announce -----------------------------------------------------------------


def work_available() -> None:
    """Wake the workers: a job has slices to hand out."""
    announce(Send(WORKERS_GROUP, WORK_AVAILABLE))


def workers_suspended(user_id: int, reason: str) -> None:
    """Tell a user's worker tabs they get no work for a while (verification votes lost)."""
    announce(Send(user_workers_group(user_id), {"type": "worker.suspended", "reason": reason}))


def worker_token_revoked(token_id: int) -> None:
    """Disconnect the workers that work with a worker token just revoked."""
    announce(Send(token_workers_group(token_id), {"type": "worker.token_revoked"}))


def job_deployed(job: Job, status: dict[str, Any], subscriber: str | None) -> None:
    """A job is ready: its deploying connection watches it, the workers wake, and the watchers
    learn its status (the deploying client after its `accepted`, which is sent first)."""
    joined = [Join(job_group(job.id), subscriber)] if subscriber else []
    announce(*joined, Send(WORKERS_GROUP, WORK_AVAILABLE), event(job.id, "status", status))


def watch(job_id: str, subscriber: str) -> None:
    """A client connection's channel watches a job's events (its group)."""
    announce(Join(job_group(job_id), subscriber))


def slices_added(job: Job, status: dict[str, Any]) -> None:
    announce(Send(WORKERS_GROUP, WORK_AVAILABLE), event(job.id, "status", status))


def job_completed(job: Job) -> None:
    announce(event(job.id, "complete", {"total": job.total}))


def job_cancelled(job: Job) -> None:
    """Tell the watching clients (their exec() raises) and the workers (they drop its slices)."""
    announce(*cancel_announcements(job.id, job.cancel_code, job.cancel_reason))


def cancel_announcements(job_id: str, code: str, reason: str) -> list[Announcement]:
    abort = Send(WORKERS_GROUP, {"type": "job.abort", "job": job_id})
    return [event(job_id, "cancel", {"code": code, "reason": reason}), abort]


async def relay(job_id: str, name: str, data: Any) -> None:
    """Pass an event that changes nothing stored (a console line) straight to the watchers."""
    await deliver([event(job_id, name, data)])
