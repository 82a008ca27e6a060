"""A job's files (`job.fs`; docs/packages.md, "A job's files"): a directory or a zip archive
of the client's, as one zip archive that travels through the portal's store. Each sandbox
unpacks it read-only as the work function's current directory (dcp.runtime.packages,
mount_job_files), and so does local_exec() in a throwaway directory.

A directory is packed in a fixed order with fixed dates and modes, so the same files are the
same archive, stored once however many jobs use them.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DCPError
from ..runtime.packages import UnsafeJobFiles, check_job_files, open_job_files
from .blobs import Blob
from .packages import fixed_entry

__all__ = ["JobFilesArchive", "pack_job_files"]


@dataclass(frozen=True)
class JobFilesArchive:
    """The archive of a job's files, and what it was made from."""

    blob: Blob
    given: str

    def requirement(self) -> dict[str, Any]:
        """The deploy's `requirements.fs`."""
        return {"sha256": self.blob.sha256, "size": self.blob.size}

    def local(self) -> tuple[str, bytes]:
        """(sha256, bytes), as local_exec's LocalJob takes the job's files."""
        return self.blob.sha256, self.blob.read()


def pack_job_files(source: str | os.PathLike[str]) -> JobFilesArchive:
    """The archive of `source`: a directory (packed: every plain file under it, at its path
    relative to it) or a zip archive (as it is). EINVALID for anything else, EUNSAFEFILES for
    an archive a sandbox would refuse (a path that escapes, a link, over the limits)."""
    path = Path(source).expanduser()
    if path.is_dir():
        data = _packed(path)
    elif path.is_file() and zipfile.is_zipfile(path):
        data = path.read_bytes()
    else:
        raise DCPError("EINVALID", f"job.fs: {source} is neither a directory nor a zip archive")
    try:
        with open_job_files(data) as archive:
            check_job_files(archive)
    except (UnsafeJobFiles, zipfile.BadZipFile) as error:
        raise DCPError("EUNSAFEFILES", f"job.fs {source}: {error}") from None
    return JobFilesArchive(Blob(data), str(source))


def _packed(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_symlink():
                raise DCPError("EINVALID", f"job.fs: {path} is a symbolic link: pack plain files")
            if path.is_file():
                entry = fixed_entry(path.relative_to(directory).as_posix(), zipfile.ZIP_DEFLATED)
                archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()
