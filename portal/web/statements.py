"""Account statements on the Accounts tab: every ledger entry of one of the user's accounts with
the balance it left, as pages of STATEMENT_PAGE_SIZE lines and as one CSV file, newest first.

Both views look the address up among the user's own account keys, so another user's account
answers 404 whatever its address.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import batched

from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from dcp.protocol.credits import format_credits
from portal.bank.selectors import (
    StatementLine,
    StatementPageError,
    balance_of,
    statement_lines,
    statement_page,
)
from portal.scheduler.models import Job
from portal.wallet.models import Key, KeyKind

from .jobs import pulled_in_thread
from .views import AuthedRequest

CSV_COLUMNS = ["time", "description", "job", "counterparty", "amount", "balance"]
CSV_CHUNK = 500  # lines whose job names are looked up at once


@dataclass(frozen=True)
class StatementRow:
    """One line of a statement, ready to render or to write as CSV."""

    time: datetime
    description: str
    job: str
    counterparty: str
    amount: str  # signed credits: +10, -1.5
    balance: str
    note: str  # the page's small line under the description: the job, or a transfer's address

    def csv_cells(self) -> list[str]:
        return [
            _iso_utc(self.time),
            self.description,
            self.job,
            self.counterparty,
            self.amount,
            self.balance,
        ]


@login_required
@require_GET
def statement(request: AuthedRequest, address: str) -> HttpResponse:
    key = _own_account(request, address)
    try:
        page = statement_page(key.address, page=_page_number(request.GET.get("page", "1")))
    except StatementPageError as error:
        raise Http404(str(error)) from None
    context = {
        "tab": "accounts",
        "key": key,
        "balance": format_credits(balance_of(key.address)),
        "page": page,
        "rows": described(page.lines, labels=_labels(request)),
    }
    return render(request, "web/statement.html", context)


@login_required
@require_GET
def statement_csv(request: AuthedRequest, address: str) -> StreamingHttpResponse:
    key = _own_account(request, address)
    parts = csv_document(key.address, labels=_labels(request))
    response = StreamingHttpResponse(
        pulled_in_thread(parts) if isinstance(request, ASGIRequest) else parts,
        content_type="text/csv; charset=utf-8",
    )
    filename = key.keystore_filename.removesuffix(".keystore")
    response["Content-Disposition"] = f'attachment; filename="{filename}-statement.csv"'
    response["Cache-Control"] = "no-store"
    return response


def csv_document(address: str, *, labels: Mapping[str, str]) -> Iterator[str]:
    """The whole statement as CSV text, the header row first, then newest entry first."""
    writer = csv.writer(_Echo(), lineterminator="\r\n")
    yield writer.writerow(CSV_COLUMNS)
    for chunk in batched(statement_lines(address), CSV_CHUNK):
        rows = described(chunk, labels=labels)
        yield "".join(writer.writerow(row.csv_cells()) for row in rows)


def _own_account(request: AuthedRequest, address: str) -> Key:
    return get_object_or_404(Key, user=request.user, kind=KeyKind.ACCOUNT, address=address)


def _labels(request: AuthedRequest) -> dict[str, str]:
    """The labels of the user's accounts by address, to name them in transfers."""
    keys = Key.objects.filter(user=request.user, kind=KeyKind.ACCOUNT)
    return dict(keys.values_list("address", "label"))


def _page_number(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise Http404(f"{text!r} is not a page number")
    return int(text)


class _Echo:
    """A file for csv.writer whose write() hands the line back instead of storing it."""

    def write(self, line: str) -> str:
        return line


def _iso_utc(time: datetime) -> str:
    return time.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- descriptions -----------------------------------------------------------------------------


def described(lines: Iterable[StatementLine], *, labels: Mapping[str, str]) -> list[StatementRow]:
    """Statement lines in words: what each entry was, its job and counterparty, signed amounts;
    `labels` names the user's own accounts."""
    lines = list(lines)
    names = _job_names({line.job for line in lines if line.job})
    return [_row(line, _Names(names.get(line.job, line.job), labels)) for line in lines]


@dataclass(frozen=True)
class _Names:
    """What a description may name: the line's job, and the user's accounts by address."""

    job: str
    labels: Mapping[str, str]


def _row(line: StatementLine, names: _Names) -> StatementRow:
    describe = DESCRIPTIONS.get(line.kind, _other)
    counterparty = " ".join(line.counterparties)
    return StatementRow(
        time=line.time,
        description=describe(line, names),
        job=line.job,
        counterparty=counterparty,
        amount=("+" if line.amount > 0 else "") + format_credits(line.amount),
        balance=format_credits(line.balance),
        note=f"job {line.job}" if line.job else counterparty if line.kind == "transfer" else "",
    )


def _job_names(job_ids: set[str]) -> dict[str, str]:
    """The public name of each job, or its id when it has none."""
    rows = Job.objects.filter(pk__in=job_ids).values_list("id", "public")
    return {job_id: str(public.get("name") or job_id) for job_id, public in rows}


def _grant(line: StatementLine, names: _Names) -> str:
    # The mint's memo names the grant: "First Devs grant", "operator grant".
    return line.memo[:1].upper() + line.memo[1:] if line.memo else "Credits granted"


def _transfer(line: StatementLine, names: _Names) -> str:
    own = [names.labels[a] for a in line.counterparties if a in names.labels]
    other = f"your {own[0]} account" if own else "another account"
    return f"Transfer to {other}" if line.amount < 0 else f"Transfer from {other}"


def _escrow(line: StatementLine, names: _Names) -> str:
    return f"Escrow for job {names.job}"


def _payment(line: StatementLine, names: _Names) -> str:
    # The scheduler's memo of a payment starts with the count: "3 results of job 6f1c…".
    counted = re.match(r"(\d+) results? of job ", line.memo)
    count = int(counted.group(1)) if counted else 0
    what = "1 result" if count == 1 else f"{count} results" if count else "results"
    return f"Worker payment for {what} of job {names.job}"


def _refund(line: StatementLine, names: _Names) -> str:
    return f"Refund of the unspent escrow of job {names.job}"


def _other(line: StatementLine, names: _Names) -> str:
    return f"{line.kind.capitalize()}: {line.memo}" if line.memo else line.kind.capitalize()


# The transaction kinds that bank/services.py posts, each in words.
DESCRIPTIONS: dict[str, Callable[[StatementLine, _Names], str]] = {
    "mint": _grant,
    "transfer": _transfer,
    "escrow": _escrow,
    "payment": _payment,
    "refund": _refund,
}
