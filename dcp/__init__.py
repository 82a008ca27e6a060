"""DCP Portal client SDK: deploy Python (or JavaScript) work to volunteer browser workers.

    import dcp

    def work(x):
        return x * 2

    dcp.init("http://127.0.0.1:8000")
    job = dcp.compute_for(1, 10, work)
    job.on("result", print)
    results = job.exec(slice_payment_offer="0.001")
    print(list(results))

Nothing here imports Django: the SDK talks to the portal over its websocket protocol only.
Layers, each importing only those below it: `dcp.cli` (the command) -> `dcp.client` (jobs,
exec, connections) -> `dcp.runtime` (slices computed locally) -> `dcp.protocol` (the wire),
`dcp.keys` (keystores), `dcp.config` and `dcp.errors`.
Names are imported on first use, so `import dcp` is quick (local_exec's worker processes and
the `dcp` command start fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client.api import compute, compute_for, jobs
    from .client.blobs import Blob
    from .client.cheques import market_value
    from .client.inputs import MultiRange, Range, Sparse
    from .client.job import Job
    from .client.options import Quorum
    from .client.results import ResultHandle
    from .config import init
    from .errors import DCPError
    from .keys import Keystore

__version__ = "0.1.0"

_EXPORTS = {
    "Blob": ".client.blobs",
    "DCPError": ".errors",
    "Job": ".client.job",
    "Keystore": ".keys",
    "MultiRange": ".client.inputs",
    "Quorum": ".client.options",
    "Range": ".client.inputs",
    "ResultHandle": ".client.results",
    "Sparse": ".client.inputs",
    "compute": ".client.api",
    "compute_for": ".client.api",
    "init": ".config",
    "jobs": ".client.api",
    "market_value": ".client.cheques",
}

__all__ = [
    "Blob",
    "DCPError",
    "Job",
    "Keystore",
    "MultiRange",
    "Quorum",
    "Range",
    "ResultHandle",
    "Sparse",
    "__version__",
    "compute",
    "compute_for",
    "init",
    "jobs",
    "market_value",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
