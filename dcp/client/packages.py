"""A job's `requires`: local code packed into wheels, names resolved with pip (docs/packages.md).

`compute_for(..., requires=["mpmath", "./helpers.py", "./mypkg/"])` and `job.requires(...)`
take, each:

- a local module (`./helpers.py`), a local package (`./mypkg/`, a directory with
  `__init__.py`) or a pure-Python wheel file (`./dist/tool-1.0-py3-none-any.whl`): a path that
  starts with `.`, `/` or `~`, ends with `.py`, `.whl` or a slash, or is a `pathlib.Path`.
  Modules and packages are packed here into a wheel, byte for byte the same for the same code;
- any other string: a requirement as pip takes it (`mpmath`, `networkx>=3,<4`).

`check_requires` refuses bad items at once (a path that does not exist, a string that is no
requirement). At exec() the names are resolved for the sandbox's Python: first against the
Pyodide packages the portal serves (sent by name, for the sandbox's `loadPackage`), then with
`pip download` for pure-Python wheels (py3-none-any), dependencies included; pip reads its own
configuration and environment (`PIP_INDEX_URL`, `PIP_FIND_LINKS`, `PIP_NO_INDEX`, ...). A name
that has compiled code only (and that the portal's Pyodide lacks) is refused before anything is
deployed. The wheels are stored in the portal's store (dcp.client.store) before the deploy,
which lists them in `requirements.packages` (dcp.protocol.messages.Package). local_exec()
installs the very same wheels, and takes compiled packages from this Python environment.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement

from ..config import portal_url
from ..errors import DCPError
from ..protocol.values import encode
from ..runtime.packages import (
    PYODIDE_LOCK,
    PYODIDE_PATH,
    PyodideIndex,
    UnsafeWheel,
    check_wheel,
    normalize_name,
    open_wheel,
    parse_wheel_filename,
)
from .blobs import Blob
from .store import upload_referenced

__all__ = [
    "SANDBOX_PYTHON",
    "LocalCode",
    "LocalEnvironment",
    "Named",
    "PortalPyodide",
    "Resolution",
    "WheelFile",
    "check_requires",
    "fixed_entry",
    "pack_local",
    "resolve_requires",
    "upload_blobs",
]

# The Python of the sandboxes (Pyodide 314's; its lock file's `info.python`): what pip
# resolves for where the portal's lock file does not say.
SANDBOX_PYTHON = "3.14"
PIP_TIMEOUT_S = 600.0
MAX_SUPPLIED = 50  # compiled dependencies supplied by Pyodide (or this environment), at most
REQUEST_TIMEOUT_S = 30.0
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # every packed file's date: the same bytes every time
_FILE_MODE = (stat.S_IFREG | 0o644) << 16
_UNIX = 3  # a zip entry's "made on" system: the same on every machine
_SKIPPED_NAMES = re.compile(r"(__pycache__|\..*|.*\.py[co])")
_NO_MATCH = re.compile(r"No matching distribution found for (.+)")
_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
PIP_ENVIRONMENT = re.compile(r"PIP_[A-Z_]+")


# ------------------------------------------------------------------------------ what is asked


@dataclass(frozen=True)
class LocalCode:
    """A module, package or wheel file of this machine (`path` absolute), as it was given."""

    path: Path
    given: str

    @property
    def kind(self) -> str:
        """Which it is: "module", "package" or "wheel"."""
        if self.path.suffix == ".whl":
            return "wheel"
        return "package" if self.path.is_dir() else "module"

    @property
    def module(self) -> str:
        """The name it is imported by (a wheel: its file name)."""
        return self.path.stem if self.kind == "module" else self.path.name


@dataclass(frozen=True)
class Named:
    """A requirement pip resolves: its text and its parsed form."""

    text: str
    requirement: Requirement


Required = LocalCode | Named


def check_requires(items: Any) -> list[Required]:
    """What `requires` takes (a string, a path, or a list of them), checked at once: EINVALID
    for a local path that does not exist or cannot be imported, or a string pip would reject."""
    if isinstance(items, str | os.PathLike):
        items = [items]
    if not isinstance(items, Iterable):
        raise DCPError("EINVALID", f"requires takes names and paths, not {type(items).__name__}")
    checked = [_required(item) for item in items]
    _check_module_names([item for item in checked if isinstance(item, LocalCode)])
    return checked


def _required(item: Any) -> Required:
    if isinstance(item, os.PathLike) or (isinstance(item, str) and _looks_like_path(item)):
        return _local_code(item)
    if not isinstance(item, str):
        raise DCPError(
            "EINVALID", f"requires takes names and paths (str, pathlib.Path), not {item!r}"
        )
    try:
        requirement = Requirement(item)
    except InvalidRequirement as error:
        raise DCPError("EINVALID", f"requires: {item!r} is not a requirement: {error}") from None
    return Named(item.strip(), requirement)


def _looks_like_path(text: str) -> bool:
    if "://" in text:
        return False  # a requirement with a URL: `tool @ https://host/tool-1.0-py3-none-any.whl`
    return text.startswith((".", "/", "~", os.sep)) or text.endswith((".py", ".whl", "/", os.sep))


def _local_code(item: str | os.PathLike[str]) -> LocalCode:
    given = os.fspath(item)
    path = Path(given).expanduser().absolute()
    if not path.exists():
        raise DCPError("EINVALID", f"requires: {given} does not exist")
    code = LocalCode(path, given)
    if path.is_dir() and not (path / "__init__.py").is_file():
        raise DCPError(
            "EINVALID", f"requires: {given} is a directory without __init__.py, not a package"
        )
    if path.is_file() and path.suffix == ".whl":
        _wheel_name(code)
    elif path.is_file() and path.suffix != ".py":
        raise DCPError("EINVALID", f"requires: {given} is neither a .py module nor a .whl wheel")
    elif not code.module.isidentifier():
        raise DCPError(
            "EINVALID", f"requires: {given} cannot be imported: {code.module!r} is not a name"
        )
    return code


def _wheel_name(code: LocalCode) -> dict[str, str]:
    try:
        return parse_wheel_filename(code.path.name)
    except UnsafeWheel as error:
        raise DCPError("EINVALID", f"requires: {code.given}: {error}") from None


def _check_module_names(codes: list[LocalCode]) -> None:
    seen: dict[str, str] = {}
    for code in codes:
        name = code.module
        if name in seen:
            raise DCPError(
                "EINVALID", f"requires: {seen[name]} and {code.given} both give {name!r}"
            )
        seen[name] = code.given


# ---------------------------------------------------------------------------------- wheels


@dataclass(frozen=True)
class WheelFile:
    """A pure-Python wheel a job installs: its distribution, version, file name and bytes."""

    name: str
    version: str
    file: str
    blob: Blob
    paths: tuple[str, ...] = field(default=(), repr=False)  # the files it unpacks

    def package(self) -> dict[str, Any]:
        """The wheel as the deploy's `requirements.packages` lists it."""
        return {
            "name": self.name,
            "version": self.version,
            "file": self.file,
            "sha256": self.blob.sha256,
            "size": self.blob.size,
        }

    def installable(self) -> tuple[str, str, bytes]:
        """(file name, sha256, bytes), as dcp.runtime.packages.unpack_wheels takes a wheel."""
        return self.file, self.blob.sha256, self.blob.read()


def checked_wheel(file: str, data: bytes, origin: str) -> WheelFile:
    """A wheel's bytes, once dcp.runtime.packages.check_wheel passed them (EUNSAFEWHEEL else)."""
    try:
        with open_wheel(data, file) as archive:
            wheel = check_wheel(archive, file)
    except (UnsafeWheel, zipfile.BadZipFile) as error:
        raise DCPError("EUNSAFEWHEEL", f"{origin}: {error}") from None
    paths = tuple(entry.filename for entry in wheel.files)
    return WheelFile(wheel.name, wheel.version, file, Blob(data), paths)


def pack_local(code: LocalCode) -> WheelFile:
    """A local module, package or wheel file as a wheel: the same code, the same bytes."""
    if code.kind == "wheel":
        return checked_wheel(code.path.name, code.path.read_bytes(), f"requires: {code.given}")
    files = _module_files(code)
    digest = hashlib.sha256()
    for path, data in files:
        digest.update(b"%d %s %d\n" % (len(path), path.encode(), len(data)) + data)
    name = f"dcp_local_{code.module}"
    file, data = build_wheel(name, f"0+{digest.hexdigest()[:16]}", files)
    return checked_wheel(file, data, f"requires: {code.given}")


def _module_files(code: LocalCode) -> list[tuple[str, bytes]]:
    """(path in the wheel, bytes) of a module, or of every file of a package but caches and
    hidden files, in a fixed order."""
    if code.kind == "module":
        return [(code.path.name, code.path.read_bytes())]
    files = []
    for path in sorted(code.path.rglob("*")):
        relative = path.relative_to(code.path.parent)
        if any(_SKIPPED_NAMES.fullmatch(part) for part in relative.parts):
            continue
        if path.is_symlink():
            raise DCPError("EINVALID", f"requires: {path} is a symbolic link: pack plain files")
        if path.is_file():
            files.append((relative.as_posix(), path.read_bytes()))
    return files


def build_wheel(name: str, version: str, files: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """(file name, bytes) of a pure-Python wheel of `files`, with its METADATA, WHEEL and
    RECORD: deterministic (fixed dates, modes and order, stored uncompressed)."""
    escaped = re.sub(r"[-_.]+", "_", name)
    dist_info = f"{escaped}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    wheel = "Wheel-Version: 1.0\nGenerator: dcp\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    encoded = [
        *files,
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", wheel.encode()),
    ]
    record = "".join(f"{path},sha256={_record_hash(data)},{len(data)}\n" for path, data in encoded)
    encoded.append((f"{dist_info}/RECORD", f"{record}{dist_info}/RECORD,,\n".encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path, data in encoded:
            archive.writestr(fixed_entry(path), data)
    return f"{escaped}-{version}-py3-none-any.whl", buffer.getvalue()


def fixed_entry(path: str, compress_type: int = zipfile.ZIP_STORED) -> zipfile.ZipInfo:
    """A zip entry for a packed file that is the same on every machine: a fixed date and
    mode, whatever the file's own."""
    entry = zipfile.ZipInfo(path, _FIXED_TIME)
    entry.external_attr, entry.create_system = _FILE_MODE, _UNIX
    entry.compress_type = compress_type
    return entry


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# --------------------------------------------------------- who supplies compiled packages


class Supplier(Protocol):
    """Who supplies the packages pip cannot get as pure-Python wheels, and for which Python."""

    @property
    def python(self) -> str:
        """The sandbox's Python (major.minor), which pip resolves for."""

    @property
    def prefer(self) -> bool:
        """Whether a name it supplies is taken from it before pip is asked."""

    @property
    def where(self) -> str:
        """What it is, for messages: "the portal's Pyodide packages"."""

    def supplies(self, name: str) -> tuple[str, str] | None:
        """(its name for the package, version) when it supplies `name`, else None."""

    def key(self) -> str:
        """What tells its answers apart from another supplier's (a cache key)."""


class PortalPyodide:
    """The Pyodide packages a portal serves: its lock file (fetched when first needed) and
    each package's file, asked with HEAD."""

    prefer = True
    where = "the portal's Pyodide packages"

    def __init__(self, url: str | None = None) -> None:
        self.base = portal_url(url) + PYODIDE_PATH
        self._index: PyodideIndex | None = None

    @property
    def index(self) -> PyodideIndex:
        """The portal's lock file; an empty one where the portal serves none."""
        if self._index is None:
            self._index = PyodideIndex(_fetch_json(self.base + PYODIDE_LOCK), self._serves)
        return self._index

    @property
    def python(self) -> str:
        return self.index.python or SANDBOX_PYTHON

    def supplies(self, name: str) -> tuple[str, str] | None:
        package = self.index.find(name)
        return (package.name, package.version) if package is not None else None

    def key(self) -> str:
        return self.base

    def _serves(self, file_name: str) -> bool:
        return _fetch(self.base + file_name, "HEAD") is not None


class LocalEnvironment:
    """This Python environment, for local_exec: what it has installed stands in for Pyodide's
    packages; pure-Python wheels are the sandbox's all the same."""

    python = SANDBOX_PYTHON
    prefer = False
    where = "the packages of this Python environment"

    def supplies(self, name: str) -> tuple[str, str] | None:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def key(self) -> str:
        return f"local:{sys.prefix}"


def _fetch(url: str, method: str = "GET") -> bytes | None:
    """The body at `url` (b"" for HEAD), None for a 404; ENOCONNECTION for anything else."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 - the portal's http(s) URL
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise DCPError("ENOCONNECTION", f"{url}: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DCPError("ENOCONNECTION", f"cannot reach {url}: {error}") from None


def _fetch_json(url: str) -> dict[str, Any]:
    body = _fetch(url)
    try:
        lock = json.loads(body) if body is not None else {}
    except ValueError:
        raise DCPError("ENOCONNECTION", f"{url} is not a Pyodide lock file (JSON)") from None
    return lock if isinstance(lock, dict) else {}


# ------------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class Resolution:
    """A job's `requires`, resolved: the wheels it installs, and the packages its sandbox
    supplies itself ((name, version): Pyodide's, or this environment's for local_exec)."""

    wheels: tuple[WheelFile, ...] = ()
    supplied: tuple[tuple[str, str], ...] = ()

    def requirements(self) -> dict[str, Any]:
        """The deploy's `requirements.packages` and `.pyodide`, those that are not empty."""
        parts: dict[str, Any] = {}
        if self.wheels:
            parts["packages"] = [wheel.package() for wheel in self.wheels]
        if self.supplied:
            parts["pyodide"] = sorted({name for name, _ in self.supplied})
        return parts


Resolved = tuple[tuple[WheelFile, ...], tuple[tuple[str, str], ...]]
# Names resolved in this process, by supplier, requirements and pip's environment: a second
# job that requires the same names asks pip nothing.
_resolved: dict[tuple[Any, ...], Resolved] = {}


def resolve_requires(required: list[Required], supplier: Supplier) -> Resolution:
    """Pack the local code and resolve the names of `required` for `supplier`'s sandbox:
    DCPError (EINVALID, ENOPACKAGE, ECOMPILED, ENOWHEEL, EUNSAFEWHEEL) naming what cannot be
    had, and why."""
    local = tuple(pack_local(item) for item in required if isinstance(item, LocalCode))
    named = [item for item in required if isinstance(item, Named)]
    wheels, supplied = _resolve_names(named, supplier) if named else ((), ())
    resolution = Resolution((*local, *wheels), supplied)
    _check_overlaps(resolution.wheels)
    return resolution


def _resolve_names(named: list[Named], supplier: Supplier) -> Resolved:
    pip_environment = sorted((k, v) for k, v in os.environ.items() if PIP_ENVIRONMENT.match(k))
    key = (supplier.key(), tuple(item.text for item in named), tuple(pip_environment))
    if key not in _resolved:
        supplied: dict[str, tuple[str, str]] = {}
        texts = [item.text for item in named if not _take_supplied(item, supplier, supplied)]
        wheels = _pip_wheels(texts, supplier, supplied) if texts else ()
        _resolved[key] = wheels, tuple(sorted(supplied.values()))
    return _resolved[key]


def _take_supplied(item: Named, supplier: Supplier, supplied: dict[str, tuple[str, str]]) -> bool:
    """Whether the supplier (Pyodide first) has a version the requirement takes: noted then."""
    found = supplier.supplies(item.requirement.name) if supplier.prefer else None
    if found is None or not _satisfies(item.requirement, found[1]):
        return False
    supplied[normalize_name(item.requirement.name)] = found
    return True


def _satisfies(requirement: Requirement, version: str) -> bool:
    try:
        return requirement.specifier.contains(version, prereleases=True)
    except ValueError:  # a version PEP 440 does not read
        return False


def _check_overlaps(wheels: tuple[WheelFile, ...]) -> None:
    """EINVALID when two wheels would unpack the same file (the sandbox would refuse them)."""
    owner: dict[str, str] = {}
    for wheel in wheels:
        for path in wheel.paths:
            if path in owner:
                raise DCPError(
                    "EINVALID", f"requires: {owner[path]} and {wheel.file} both hold {path}"
                )
            owner[path] = wheel.file


def _pip_wheels(
    texts: list[str], supplier: Supplier, supplied: dict[str, tuple[str, str]]
) -> tuple[WheelFile, ...]:
    """Pure-Python wheels of `texts` and their dependencies, with pip; a dependency pip finds
    no pure wheel of is taken from the supplier when it has it, and pip asked again."""
    for _ in range(MAX_SUPPLIED + 1):
        with tempfile.TemporaryDirectory(prefix="dcp-pip-") as work:
            output, ok = _pip_download(texts, supplier.python, supplied, Path(work))
            if ok:
                return _downloaded(Path(work) / "wheels", supplied)
        _supply_missing(output, texts, supplier, supplied)
    raise DCPError("ENOPACKAGE", f"{', '.join(texts)} need over {MAX_SUPPLIED} compiled packages")


def _pip_download(
    texts: list[str], python: str, supplied: dict[str, tuple[str, str]], work: Path
) -> tuple[str, bool]:
    """pip's output and whether it downloaded wheels for `python` (any machine) into
    `work/wheels`, with stand-ins for the supplied packages."""
    command = [sys.executable, "-m", "pip", "download", "--dest", str(work / "wheels")]
    command += ["--only-binary=:all:", "--implementation", "py", "--abi", "none"]
    command += ["--platform", "any", "--python-version", python, "--no-input", "-vv"]
    command += ["--progress-bar", "off", *_stand_ins(supplied, work), *texts]
    try:
        run = subprocess.run(  # noqa: S603 - pip of this very Python
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DCPError("ENOPACKAGE", f"pip took over {PIP_TIMEOUT_S:.0f} s to resolve") from None
    output = run.stdout + run.stderr
    if run.returncode != 0 and "No module named pip" in output:
        raise DCPError("ENOPIP", f"requires needs pip in {sys.executable} (python -m ensurepip)")
    return output, run.returncode == 0


def _stand_ins(supplied: dict[str, tuple[str, str]], work: Path) -> list[str]:
    """pip options that make it take each supplied package as installed at its version: an
    empty wheel of it beside a constraint pinning that version (dropped after resolving)."""
    if not supplied:
        return []
    folder = work / "supplied"
    folder.mkdir()
    for name, version in supplied.values():
        file, data = build_wheel(name, version, [])
        (folder / file).write_bytes(data)
    pins = "".join(f"{name}=={version}\n" for name, version in supplied.values())
    (work / "supplied.txt").write_text(pins)
    return ["--find-links", str(folder), "--constraint", str(work / "supplied.txt")]


def _downloaded(folder: Path, supplied: dict[str, tuple[str, str]]) -> tuple[WheelFile, ...]:
    """The wheels pip chose, checked, but those of supplied packages."""
    wheels = []
    for path in sorted(folder.glob("*.whl")):
        name = normalize_name(path.name.split("-", 1)[0])
        if name not in supplied:
            wheels.append(checked_wheel(path.name, path.read_bytes(), f"{path.name} (from pip)"))
    return tuple(wheels)


def _supply_missing(
    output: str, texts: list[str], supplier: Supplier, supplied: dict[str, tuple[str, str]]
) -> None:
    """Note the package pip found no pure wheel of as supplied, when the supplier has a
    version it takes; else the DCPError that says why it cannot be had."""
    found = _NO_MATCH.findall(output)
    wanted, _, needed_by = (found[-1].strip() if found else "").partition(" (from ")
    try:
        requirement = Requirement(wanted)
    except InvalidRequirement:
        raise DCPError(
            "ENOPACKAGE", f"pip cannot resolve {', '.join(texts)}: {_pip_errors(output)}"
        ) from None
    name, by = requirement.name, f" (needed by {needed_by.rstrip(')')})" if needed_by else ""
    has = supplier.supplies(name)
    if has is None or normalize_name(name) in supplied:
        raise _unavailable(name, by, output, supplier)
    if not _satisfies(requirement, has[1]):
        raise DCPError(
            "ENOPACKAGE",
            f"{wanted}{by}: among {supplier.where} is {name} {has[1]}, which it does not allow",
        )
    supplied[normalize_name(name)] = has


def _unavailable(name: str, by: str, output: str, supplier: Supplier) -> DCPError:
    """Why pip found nothing for `name`: what it skipped of that name's files, in words."""
    skipped = _skipped_lines(output, name)
    if any("wheel's tags" in line for line in skipped):
        return DCPError(
            "ECOMPILED",
            f"{name}{by} has compiled code: its wheels are built for particular machines, "
            f"not pure Python (py3-none-any), and it is not among {supplier.where}. A sandbox "
            "installs pure-Python wheels and Pyodide's own packages only (docs/packages.md)",
        )
    if any("No sources permitted" in line or "No binaries" in line for line in skipped):
        return DCPError(
            "ENOWHEEL",
            f"{name}{by} has no wheel on the index, only source archives, and it is not among "
            f"{supplier.where}: build a pure-Python wheel of it (pip wheel --no-deps) and "
            "require that file, requires=['./<the wheel>.whl']",
        )
    if any("different Python" in line for line in skipped):
        return DCPError(
            "ENOPACKAGE", f"{name}{by} has no version for Python {supplier.python}, the sandbox's"
        )
    versions = _VERSIONS.findall(output)
    if versions and versions[-1].strip() not in ("", "none"):
        return DCPError(
            "ENOPACKAGE",
            f"no version of {name}{by} fits what is asked (the index has {versions[-1]}; "
            f"pip: {_pip_errors(output)})",
        )
    return DCPError(
        "ENOPACKAGE", f"no package {name!r}{by} on the package index (pip: {_pip_errors(output)})"
    )


def _skipped_lines(output: str, name: str) -> list[str]:
    """pip's lines about files of `name` it passed over (with -vv), each naming the file."""
    wanted = normalize_name(name)
    lines = []
    for line in output.splitlines():
        for url in re.findall(r"(?:https?|file)://\S+", line):
            file = url.rstrip(")").rsplit("/", 1)[-1].split("#", 1)[0]
            if normalize_name(file.split("-", 1)[0]) == wanted:
                lines.append(line)
                break
    return lines


def _pip_errors(output: str) -> str:
    """pip's last error, or the end of what it said."""
    errors = [line[len("ERROR:") :] for line in output.splitlines() if line.startswith("ERROR:")]
    return errors[-1].strip() if errors else output.strip()[-500:]


def upload_blobs(url: str, identity_key: bytes, blobs: Iterable[Blob]) -> None:
    """Store what a job's requirements name (its wheels, its files) in the portal's store for
    this identity (each once per process, with the client's retries: dcp.client.store), before
    the deploy that names them."""
    upload_referenced(url, identity_key, {"args": [encode(blob) for blob in blobs]})
