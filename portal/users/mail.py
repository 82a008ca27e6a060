"""The development email backend: `make run` prints each email as a person reads it.

Django's own console backend prints a message as it goes on the wire, quoted-printable, so a
long confirmation link is cut by `=` soft line breaks and cannot be clicked. This one prints the
headers, then each text part decoded (the plain text, then each alternative such as the HTML),
and names attachments without printing them.
"""

from __future__ import annotations

from email.message import Message, MIMEPart

from django.core.mail import EmailMessage
from django.core.mail.backends.console import EmailBackend

RULE = "-" * 79
# Headers that describe the encoding on the wire, which the printed text no longer has.
WIRE_HEADERS = {"mime-version", "content-type", "content-transfer-encoding"}


class ConsoleEmailBackend(EmailBackend):
    """Writes each message's headers and decoded text parts to stdout (or `stream`)."""

    def write_message(self, message: EmailMessage) -> None:
        self.stream.write(f"{readable_text(message.message())}\n{RULE}\n")


def readable_text(mime: Message) -> str:
    """A message as a person reads it: its headers, then each part, decoded, on whole lines."""
    lines = [f"{name}: {value}" for name, value in mime.items() if name.lower() not in WIRE_HEADERS]
    for part in mime.walk():
        if not part.is_multipart():
            lines += ["", *_part_lines(part)]
    return "\n".join(lines)


def _part_lines(part: Message) -> list[str]:
    kind = part.get_content_type()
    if isinstance(part, MIMEPart) and _is_text(part):
        return [f"[{kind}]", str(part.get_content()).rstrip("\n")]
    payload = part.get_payload(decode=True)
    size = len(payload) if isinstance(payload, bytes) else 0
    name = part.get_filename() or "unnamed"
    return [f"[attachment {name}: {kind}, {size} bytes]"]


def _is_text(part: MIMEPart) -> bool:
    return part.get_content_maintype() == "text" and not part.is_attachment()
