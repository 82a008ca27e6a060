"""Wheels for tests, made in memory: a distribution's files, METADATA, WHEEL and RECORD."""

from __future__ import annotations

import io
import zipfile


def make_wheel(
    name: str, version: str, files: dict[str, str], *, purelib: bool = True
) -> tuple[str, bytes]:
    """The wheel `name`-`version`-py3-none-any.whl holding `files` (path -> text): its file name
    and bytes. With `purelib` off its WHEEL file says it is not pure Python."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nRoot-Is-Purelib: {str(purelib).lower()}\nTag: py3-none-any\n"
        ),
    }
    files[f"{dist_info}/RECORD"] = "".join(
        f"{path},,\n" for path in [*files, f"{dist_info}/RECORD"]
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()
