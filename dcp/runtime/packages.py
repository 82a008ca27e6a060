"""A job's wheels and files, checked and installed: one file, run by CPython and by Pyodide.

A job that `requires` packages brings them as pure-Python wheels in the portal's store
(dcp/client/packages.py packs and resolves them; docs/packages.md). Before its first slice the
job's wheels are unpacked into a directory of its own, put first on `sys.path`: by local_exec's
workers on this machine, and by the browser sandbox in Pyodide. Both unpack through
`unpack_wheel`, which unpacks only what `check_wheel` passed; the scheduler runs the same check
on every wheel a deploy names, before it accepts the job.

A job's files (`job.fs`: a directory or archive of the client's) travel as one zip archive in
the store; `mount_job_files` checks it as strictly as a wheel (plain files at relative paths),
unpacks it read-only, and makes it the work function's current directory.

`PyodideIndex` reads a Pyodide lock file (`pyodide-lock.json`): the compiled packages a sandbox
loads with Pyodide's own `loadPackage`, where the portal serves their files.

Standard library only, and nothing from dcp: the sandbox loads this very file.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import re
import shutil
import stat
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

__all__ = [
    "MAX_WHEEL_FILES",
    "MAX_WHEEL_UNPACKED_BYTES",
    "PYODIDE_LOCK",
    "PYODIDE_PATH",
    "PyodideIndex",
    "UnsafeArchive",
    "UnsafeJobFiles",
    "UnsafeWheel",
    "Wheel",
    "check_job_files",
    "check_wheel",
    "install_wheels",
    "mount_job_files",
    "normalize_name",
    "open_job_files",
    "open_wheel",
    "parse_wheel_filename",
    "remove_job_files",
    "unpack_job_files",
    "unpack_wheel",
    "unpack_wheels",
    "use_directories",
]

# Where a portal serves Pyodide (portal/web/worker_files.py): its lock file, its packages' files.
PYODIDE_PATH = "/worker/vendor/pyodide/"
PYODIDE_LOCK = "pyodide-lock.json"
MAX_WHEEL_FILES = 20_000  # files in one wheel
MAX_WHEEL_UNPACKED_BYTES = 256 * 1024 * 1024  # one wheel's files, unpacked, together
MAX_WHEEL_PATH_CHARS = 400  # one path inside a wheel
MAX_WHEEL_METADATA_BYTES = 64 * 1024  # the .dist-info/WHEEL file
# The archive's central directory, read whole before any entry is looked at: room for
# MAX_WHEEL_FILES entries of ordinary names, and a bound on what a hostile archive costs.
MAX_WHEEL_DIRECTORY_BYTES = 4 * 1024 * 1024
_END_OF_DIRECTORY = b"PK\x05\x06"
_END_RECORD_BYTES = 22
# Extension modules and shared libraries: machine code, which no sandbox runs from a wheel.
COMPILED_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")
# name-version(-build)?-python-abi-platform.whl, the name and version escaped as PEP 427 says.
_WHEEL_FILE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-(?P<version>[A-Za-z0-9_.!+]+)"
    r"(?:-(?P<build>[0-9][A-Za-z0-9_.]*))?-(?P<python>[A-Za-z0-9_.]+)-(?P<abi>[A-Za-z0-9_.]+)"
    r"-(?P<platform>[A-Za-z0-9_.]+)\.whl"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEPARATORS = re.compile(r"[-_.]+")
# The file types an entry may have (its Unix mode's type bits; 0 where the zip has none).
_PLAIN_TYPES = (0, stat.S_IFREG, stat.S_IFDIR)


class UnsafeArchive(ValueError):
    """A zip archive of a job (a wheel, its files) that no sandbox unpacks: the message says
    which rule it breaks."""


class UnsafeWheel(UnsafeArchive):
    """A wheel that no job may install: the message says which rule it breaks."""


class UnsafeJobFiles(UnsafeArchive):
    """A job's files (`job.fs`) that no sandbox mounts: the message says which rule it breaks."""


def normalize_name(name: str) -> str:
    """A distribution's name as PEP 503 compares names: `Foo.Bar_baz` is `foo-bar-baz`."""
    return _SEPARATORS.sub("-", name).lower()


@dataclass(frozen=True)
class Wheel:
    """A checked wheel: its distribution's name and version, and the files to unpack."""

    name: str
    version: str
    files: tuple[zipfile.ZipInfo, ...]


def parse_wheel_filename(filename: str) -> dict[str, str]:
    """The parts of a pure-Python wheel's file name (`name`, `version`, `python`, `abi`,
    `platform`); UnsafeWheel for any other name."""
    match = _WHEEL_FILE.fullmatch(filename)
    if match is None:
        raise UnsafeWheel(f"{filename!r} is not a wheel's file name (name-version-tags.whl)")
    parts = match.groupdict()
    if parts["abi"] != "none" or parts["platform"] != "any":
        tags = f"{parts['python']}-{parts['abi']}-{parts['platform']}"
        raise UnsafeWheel(f"{filename} is built for {tags}: only pure-Python wheels (none-any)")
    return parts


def check_wheel(archive: zipfile.ZipFile, filename: str) -> Wheel:
    """Check a wheel before anything of it is unpacked; UnsafeWheel naming the first problem.

    A wheel passes when its file name is a pure-Python wheel's, and its archive holds at most
    MAX_WHEEL_FILES plain files (no links, devices or encrypted entries) of at most
    MAX_WHEEL_UNPACKED_BYTES together, each at a relative path without `..` under one of its
    packages or modules (a top-level name Python can import) or its own `.dist-info`, with no
    compiled code and a WHEEL file that says it is pure Python.
    """
    parts = parse_wheel_filename(filename)
    entries = archive.infolist()
    if len(entries) > MAX_WHEEL_FILES:
        raise UnsafeWheel(f"{filename} holds {len(entries)} files: at most {MAX_WHEEL_FILES}")
    dist_info = _dist_info_dir(entries, parts, filename)
    files = tuple(entry for entry in entries if not entry.is_dir())
    seen: set[str] = set()
    for entry in entries:
        _check_entry(entry, dist_info, filename, seen)
    total = sum(entry.file_size for entry in files)
    if total > MAX_WHEEL_UNPACKED_BYTES:
        raise UnsafeWheel(
            f"{filename} unpacks to {total} bytes: at most {MAX_WHEEL_UNPACKED_BYTES}"
        )
    _check_purelib(archive, f"{dist_info}/WHEEL", filename)
    return Wheel(parts["name"], parts["version"], files)


def _dist_info_dir(entries: list[zipfile.ZipInfo], parts: dict[str, str], filename: str) -> str:
    """The wheel's one `.dist-info` directory, which must name the wheel's own distribution."""
    found = {
        entry.filename.split("/", 1)[0]
        for entry in entries
        if entry.filename.split("/", 1)[0].endswith(".dist-info")
    }
    wanted = f"{parts['name']}-{parts['version']}.dist-info"
    if len(found) != 1 or _folded(next(iter(found))) != _folded(wanted):
        listed = ", ".join(sorted(found)) or "none"
        raise UnsafeWheel(f"{filename} must hold one {wanted} directory (it holds: {listed})")
    return next(iter(found))


def _folded(dist_info: str) -> str:
    return dist_info.lower().replace("-", "_").replace(".", "_")


def _check_entry(entry: zipfile.ZipInfo, dist_info: str, filename: str, seen: set[str]) -> None:
    name = entry.filename
    where = f"{filename}: {name!r}"
    _check_plain_entry(entry, where, seen, UnsafeWheel)
    top, *rest = name.split("/")
    if top != dist_info and not _importable_top(top, bool(rest)):
        raise UnsafeWheel(f"{where} is outside the wheel's packages and its {dist_info} directory")
    if not entry.is_dir() and name.lower().endswith(COMPILED_SUFFIXES):
        raise UnsafeWheel(f"{where} is compiled code: only pure-Python wheels install")


def _check_plain_entry(
    entry: zipfile.ZipInfo, where: str, seen: set[str], unsafe: type[UnsafeArchive]
) -> None:
    """A plain file or directory at a path of its own, stored as any zip tool stores it."""
    _check_path(entry.filename, where, unsafe)
    if entry.flag_bits & 0x1:
        raise unsafe(f"{where} is encrypted")
    if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise unsafe(f"{where} is compressed with method {entry.compress_type}")
    if stat.S_IFMT(entry.external_attr >> 16) not in _PLAIN_TYPES:
        raise unsafe(f"{where} is a link or a special file, not a plain file")
    folded = entry.filename.rstrip("/").casefold()
    if folded in seen:
        raise unsafe(f"{where} is in the archive twice")
    seen.add(folded)


def _check_path(name: str, where: str, unsafe: type[UnsafeArchive]) -> None:
    """A relative POSIX path, each part a plain name: nothing that could land elsewhere."""
    if not name or len(name) > MAX_WHEEL_PATH_CHARS:
        raise unsafe(f"{where} has no name or a name over {MAX_WHEEL_PATH_CHARS} characters")
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise unsafe(f"{where} is an absolute path or not a plain POSIX path")
    path = name[:-1] if name.endswith("/") else name
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise unsafe(f"{where} has an empty, '.' or '..' part: it could escape its place")


def _importable_top(top: str, is_directory: bool) -> bool:
    """Whether a top-level entry is something Python imports: a package directory, a module."""
    if is_directory:
        return _IDENTIFIER.fullmatch(top) is not None
    stem, dot, suffix = top.rpartition(".")
    return bool(dot) and suffix in ("py", "pyi") and _IDENTIFIER.fullmatch(stem) is not None


def _check_purelib(archive: zipfile.ZipFile, metadata: str, filename: str) -> None:
    try:
        info = archive.getinfo(metadata)
    except KeyError:
        raise UnsafeWheel(f"{filename} has no {metadata}") from None
    if info.file_size > MAX_WHEEL_METADATA_BYTES:
        raise UnsafeWheel(f"{filename}: {metadata} is over {MAX_WHEEL_METADATA_BYTES} bytes")
    text = archive.read(info).decode("utf-8", "replace")
    fields = dict(
        (key.strip().lower(), value.strip())
        for key, sep, value in (line.partition(":") for line in text.splitlines())
        if sep
    )
    if fields.get("root-is-purelib", "").lower() != "true":
        raise UnsafeWheel(f"{filename}: {metadata} does not say Root-Is-Purelib: true")


def open_wheel(data: bytes | BinaryIO, filename: str) -> zipfile.ZipFile:
    """A wheel's archive, opened once its central directory is known to be within
    MAX_WHEEL_FILES entries and MAX_WHEEL_DIRECTORY_BYTES (zipfile reads it whole);
    UnsafeWheel for anything else, or what is no zip archive."""
    return _open_archive(data, filename, UnsafeWheel)


def _open_archive(
    data: bytes | BinaryIO, filename: str, unsafe: type[UnsafeArchive]
) -> zipfile.ZipFile:
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    entries, directory_bytes = _directory_size(source, filename, unsafe)
    if entries > MAX_WHEEL_FILES or directory_bytes > MAX_WHEEL_DIRECTORY_BYTES:
        raise unsafe(
            f"{filename} lists {entries} files in {directory_bytes} bytes: at most "
            f"{MAX_WHEEL_FILES} files in {MAX_WHEEL_DIRECTORY_BYTES} bytes"
        )
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as error:
        raise unsafe(f"{filename} is not a zip archive: {error}") from None


def _directory_size(
    source: BinaryIO, filename: str, unsafe: type[UnsafeArchive]
) -> tuple[int, int]:
    """(entries, bytes) of the archive's central directory, from its end record (a zip64
    archive, 0xFFFF entries, counts as too many: no wheel needs it)."""
    size = source.seek(0, io.SEEK_END)
    tail = min(size, _END_RECORD_BYTES + 0xFFFF)  # the record, then a comment of up to 64 KiB
    source.seek(size - tail)
    data = source.read(tail)
    at = data.rfind(_END_OF_DIRECTORY)
    if at < 0 or len(data) - at < _END_RECORD_BYTES:
        raise unsafe(f"{filename} is not a zip archive")
    entries = int.from_bytes(data[at + 10 : at + 12], "little")
    directory_bytes = int.from_bytes(data[at + 12 : at + 16], "little")
    source.seek(0)
    return (MAX_WHEEL_FILES + 1 if entries == 0xFFFF else entries), directory_bytes


def unpack_wheel(data: bytes | BinaryIO, filename: str, target: Path) -> Wheel:
    """Unpack a wheel into `target` (a directory of the job's own) after check_wheel passed
    it; UnsafeWheel when it does not, or when it would overwrite a file already there."""
    with open_wheel(data, filename) as archive:
        wheel = check_wheel(archive, filename)
        try:
            for entry in wheel.files:
                _write(archive, entry, target, filename)
        except zipfile.BadZipFile as error:  # an entry whose bytes do not match its CRC
            raise UnsafeWheel(f"{filename} is damaged: {error}") from None
    return wheel


def _write(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, target: Path, filename: str) -> None:
    destination = target.joinpath(*PurePosixPath(entry.filename).parts)
    if destination.exists() or destination.is_symlink():
        raise UnsafeWheel(f"{filename}: {entry.filename} is in another of the job's wheels too")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(entry) as source, destination.open("xb") as sink:
        shutil.copyfileobj(source, sink)


def unpack_wheels(directory: str | Path, wheels: Iterable[tuple[str, str, bytes]]) -> str:
    """Unpack a job's wheels into `directory` (created; empty): each `(file name, sha256,
    bytes)` is checked against its hash, then unpacked by unpack_wheel. Returns the directory;
    UnsafeWheel for a wheel that fails."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for filename, sha256, data in wheels:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise UnsafeWheel(f"{filename} does not hash to {sha256}: it is not the job's wheel")
        unpack_wheel(bytes(data), filename, target)
    return str(target)


def use_directories(directories: Iterable[str]) -> None:
    """Put these directories first on sys.path (the first of them first), for imports."""
    for place in reversed(list(directories)):
        if place not in sys.path:
            sys.path.insert(0, place)
    importlib.invalidate_caches()


def install_wheels(directory: str | Path, wheels: Iterable[tuple[str, str, bytes]]) -> str:
    """Install a job's wheels before its first slice: unpack_wheels into `directory`, then that
    directory first on sys.path. Returns the directory."""
    place = unpack_wheels(directory, wheels)
    use_directories([place])
    return place


# ---------------------------------------------------------------------------- a job's files

JOB_FILES = "the job's files"  # how messages name the archive of `job.fs`
MAX_JOB_FILES_UNPACKED_BYTES = 256 * 1024 * 1024  # a job's files, unpacked, together
READ_ONLY_FILE, READ_ONLY_DIRECTORY = 0o444, 0o555


def check_job_files(archive: zipfile.ZipFile) -> tuple[zipfile.ZipInfo, ...]:
    """Check the archive of a job's files (`job.fs`) before anything of it is unpacked: at
    most MAX_WHEEL_FILES plain files and directories of at most MAX_JOB_FILES_UNPACKED_BYTES
    together, each at a relative path without `..`; UnsafeJobFiles naming the first problem.
    Returns the entries."""
    entries = tuple(archive.infolist())
    if len(entries) > MAX_WHEEL_FILES:
        raise UnsafeJobFiles(f"{JOB_FILES} hold {len(entries)} files: at most {MAX_WHEEL_FILES}")
    seen: set[str] = set()
    for entry in entries:
        _check_plain_entry(entry, f"{JOB_FILES}: {entry.filename!r}", seen, UnsafeJobFiles)
    total = sum(entry.file_size for entry in entries)
    if total > MAX_JOB_FILES_UNPACKED_BYTES:
        raise UnsafeJobFiles(
            f"{JOB_FILES} unpack to {total} bytes: at most {MAX_JOB_FILES_UNPACKED_BYTES}"
        )
    return entries


def open_job_files(data: bytes | BinaryIO) -> zipfile.ZipFile:
    """The archive of a job's files, opened as open_wheel opens a wheel; UnsafeJobFiles."""
    return _open_archive(data, JOB_FILES, UnsafeJobFiles)


def mount_job_files(directory: str | Path, data: bytes, sha256: str) -> str:
    """Before a job's first slice: its files unpacked (unpack_job_files) and `directory` the
    current one, where the work function finds them (`open("data.csv")`). Returns it."""
    place = unpack_job_files(directory, data, sha256)
    os.chdir(place)
    return place


def unpack_job_files(directory: str | Path, data: bytes, sha256: str) -> str:
    """A job's files (a zip archive whose SHA-256 is `sha256`), checked, unpacked into
    `directory` (created) and made read-only; UnsafeJobFiles for an archive that fails."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UnsafeJobFiles(f"{JOB_FILES} do not hash to {sha256}: they are not the job's")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    with open_job_files(data) as archive:
        entries = check_job_files(archive)
        try:
            for entry in entries:
                if entry.is_dir():
                    target.joinpath(*PurePosixPath(entry.filename).parts).mkdir(
                        parents=True, exist_ok=True
                    )
                else:
                    _write(archive, entry, target, JOB_FILES)
        except zipfile.BadZipFile as error:
            raise UnsafeJobFiles(f"{JOB_FILES} are damaged: {error}") from None
    _set_modes(target, READ_ONLY_FILE, READ_ONLY_DIRECTORY)
    return str(target)


def remove_job_files(directory: str | Path) -> None:
    """Remove unpacked job files (their directories made writable again first)."""
    if os.path.isdir(directory):
        _set_modes(Path(directory), 0o644, 0o755)
        shutil.rmtree(directory, ignore_errors=True)


def _set_modes(root: Path, file_mode: int, directory_mode: int) -> None:
    if directory_mode & 0o200:
        os.chmod(root, directory_mode)  # writable first, to walk down and change
    for place, directories, files in os.walk(root, topdown=bool(directory_mode & 0o200)):
        for name in files:
            os.chmod(os.path.join(place, name), file_mode)
        for name in directories:
            os.chmod(os.path.join(place, name), directory_mode)
    os.chmod(root, directory_mode)


# ---------------------------------------------------------------------------- Pyodide's own


@dataclass(frozen=True)
class PyodidePackage:
    """One package of a Pyodide lock file: what `loadPackage(name)` loads."""

    name: str
    version: str
    file_name: str
    depends: tuple[str, ...]


class PyodideIndex:
    """The Pyodide packages a portal offers: those its lock file lists whose files (and whose
    dependencies' files) it serves. `served(file_name)` says whether it serves a file."""

    def __init__(self, lock: Mapping[str, Any], served: Callable[[str], bool]) -> None:
        self.python = _major_minor(str(lock.get("info", {}).get("python", "")))
        self.packages = {
            normalize_name(key): PyodidePackage(
                name=str(entry.get("name", key)),
                version=str(entry.get("version", "")),
                file_name=str(entry.get("file_name", "")),
                depends=tuple(str(name) for name in entry.get("depends", ())),
            )
            for key, entry in dict(lock.get("packages", {})).items()
        }
        self._served = served
        self._available: dict[str, bool] = {}

    def find(self, name: str) -> PyodidePackage | None:
        """The package `name` (any spelling), when the portal serves it and all it depends on."""
        package = self.packages.get(normalize_name(name))
        if package is None or not self._is_available(normalize_name(name), set()):
            return None
        return package

    def _is_available(self, key: str, visiting: set[str]) -> bool:
        if key in self._available:
            return self._available[key]
        package = self.packages.get(key)
        if package is None or key in visiting:
            return package is not None  # a cycle: decided where it started
        visiting.add(key)
        available = bool(package.file_name) and self._served(package.file_name)
        for depend in package.depends:
            available = available and self._is_available(normalize_name(depend), visiting)
        self._available[key] = available
        return available


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
