"""`make run` prints each email decoded, so a newcomer can click the confirmation link."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.core import mail
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives

from portal.users.mail import ConsoleEmailBackend

REPO = Path(__file__).resolve().parents[2]
LONG_LINK = (
    "http://127.0.0.1:8000/accounts/confirm-email/"
    "MQ:1uXyZa:Qk3v9sT0p8LrM2nB7cWdE5fGhJ6kL1mN4oPqR8sTuV0wXyZ-aBcDeFgHiJkLmNoPqRsTuVw/"
)


def test_a_long_link_is_printed_whole_on_one_line_in_text_and_html(capsys):
    message = EmailMultiAlternatives(
        subject="[DCP Portal] Confirm your email address — café",
        body=f"Hello from DCP Portal!\n\nTo confirm, go to {LONG_LINK}\n\nThank you — ü\n",
        from_email="DCP Portal <noreply@localhost>",
        to=["new@example.com"],
    )
    message.attach_alternative(f'<p><a href="{LONG_LINK}">Confirm</a> — ü</p>', "text/html")

    sent = ConsoleEmailBackend().send_messages([message])

    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert sent == 1
    assert f"To confirm, go to {LONG_LINK}" in lines
    assert f'<p><a href="{LONG_LINK}">Confirm</a> — ü</p>' in lines
    assert "Subject: [DCP Portal] Confirm your email address — café" in lines
    assert "To: new@example.com" in lines
    assert [line for line in lines if line.startswith("[text/")] == ["[text/plain]", "[text/html]"]
    assert "=\n" not in printed and "=E2=80=94" not in printed  # nothing quoted-printable


def test_an_attachment_is_named_not_printed(capsys):
    message = EmailMultiAlternatives("Results", "See the attached file.", to=["a@example.com"])
    message.attach("results.bin", b"\x00\x01" * 600, "application/octet-stream")

    ConsoleEmailBackend().send_messages([message])

    printed = capsys.readouterr().out
    assert "See the attached file." in printed.splitlines()
    assert "[attachment results.bin: application/octet-stream, 1200 bytes]" in printed


def test_the_verification_email_prints_its_confirm_link_whole(client, db, capsys):
    cache.clear()  # sign-ups are rate-limited per address: earlier tests' count must not apply
    client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a long pass 123",
            "password2": "a long pass 123",
        },
    )
    verification = mail.outbox[-1]
    link = re.search(r"http://testserver/accounts/confirm-email/\S+/", verification.body).group(0)

    ConsoleEmailBackend().send_messages([verification])

    lines = capsys.readouterr().out.splitlines()
    assert any(line.endswith(link) for line in lines), lines


def test_development_settings_print_email_with_this_backend():
    """`make run`'s settings (DEBUG, no EMAIL_BACKEND) send through the readable backend."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "EMAIL_BACKEND"}}
    env = {k: v for k, v in env.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    send = (
        "from django.core.mail import send_mail; "
        f"send_mail('Hi', 'Go to {LONG_LINK}', None, ['b@example.com'])"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", send],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Go to {LONG_LINK}" in result.stdout.splitlines()
