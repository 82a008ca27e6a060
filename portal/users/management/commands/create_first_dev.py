"""Create a verified First Dev with an identity key, for demos, benchmarks and operators.

    manage.py create_first_dev ada@example.com --password '...' --keystores ~/.dcp --credits 100

writes `id.keystore` and `default.keystore` (no passphrase unless --keystore-passphrase) into
the folder, ready for the Python client. Extra credits beyond the First Devs grant are minted,
so this is an operator's tool: never expose it to users.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from dcp.protocol.credits import AmountError, to_units
from portal.bank import services as bank
from portal.users.models import User
from portal.users.services import join_first_devs
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key, ensure_default_account, export_keystore


class Command(BaseCommand):
    help = "Create (or reuse) a verified First Dev and write its keystores."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password", required=True)
        parser.add_argument("--keystores", type=Path, help="folder for id/default.keystore")
        parser.add_argument("--keystore-passphrase", default="")
        parser.add_argument("--credits", default="0", help="extra credits to mint")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            extra = to_units(options["credits"])
        except AmountError as error:
            raise CommandError(str(error)) from None
        user = self.first_dev(options["email"], options["password"], extra)
        account = ensure_default_account(user=user)
        identity = Key.objects.filter(user=user, kind=KeyKind.IDENTITY).first() or create_key(
            user=user, kind=KeyKind.IDENTITY, label="cli"
        )
        folder: Path | None = options["keystores"]
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for key, name in ((identity, "id.keystore"), (account, "default.keystore")):
                keystore = export_keystore(key=key, file_passphrase=options["keystore_passphrase"])
                (folder / name).write_text(json.dumps(keystore))
                (folder / name).chmod(0o600)
        self.stdout.write(
            json.dumps(
                {"email": user.email, "account": account.address, "identity": identity.address}
            )
        )

    @transaction.atomic
    def first_dev(self, email: str, password: str, extra: int) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email, password)
            EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        join_first_devs(user=user)
        if extra > 0:
            bank.mint(
                target=bank.account_for_address(ensure_default_account(user=user).address),
                amount=extra,
                idempotency_key=f"operator-grant:{user.pk}:{extra}",
                memo="operator grant",
            )
        return user
