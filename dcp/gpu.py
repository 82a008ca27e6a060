"""GPU compute for work functions: `from dcp import gpu` (the module is dcp.runtime.gpu).

The same module runs in a volunteer's browser sandbox and in local_exec(); see its docstring.
"""

from __future__ import annotations

import sys

from dcp.runtime import gpu as _gpu

# One module, one device and one GPU-time meter: dcp.gpu is dcp.runtime.gpu itself.
sys.modules[__name__] = _gpu
