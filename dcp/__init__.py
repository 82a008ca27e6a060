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
"""

from __future__ import annotations

from .compute import compute, compute_for
from .config import init
from .errors import DCPError
from .job import Job
from .keys import Keystore
from .results import ResultHandle

__version__ = "0.1.0"

__all__ = [
    "DCPError",
    "Job",
    "Keystore",
    "ResultHandle",
    "__version__",
    "compute",
    "compute_for",
    "init",
]
