"""The runtime layer: how slices of a job are computed, below the client.

- `slice.py`: THE slice runtime for Python work functions, one standard-library file that
  CPython (local workers, the synthetic worker) imports and Pyodide loads in the browser sandbox.
- `slice.mjs`: the same for JavaScript work functions, imported by the sandbox and by node.
- `runtimes.py`: the work-function runtimes ("python", "js") as a registered table: the files a
  sandbox loads and how a local worker process starts.
- `worker.py`: the local worker process for Python work functions (`python -m dcp.runtime.worker`).
- `local.py`: local execution: the scheduler-like loop that feeds local workers.
- `packages.py`: a job's wheels checked (`check_wheel`) and installed (`install_wheels`), and
  Pyodide lock files read; run by CPython, the scheduler and Pyodide.

Nothing here imports the client: the runtime may import `dcp.protocol` and `dcp.errors` only.
"""
