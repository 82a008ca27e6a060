"""The wire protocol of DCP Portal, defined once: imported by the scheduler, the client and
the test workers (and rendered into worker_static/protocol.js for the browser).

- `limits`: the version and the size limits both ends agree on;
- `messages`: every message of both websockets, as pydantic models;
- `ids`: the forms of the ids they carry (a job id);
- `signed`: the texts keys sign and the job hash a cheque covers;
- `values`: the value encoding (bytes, blob references) every end and the slice runtime share;
- `inputs`: the computed input forms (ranges, products) and their exact arithmetic;
- `credits`: credits as exact decimals and as the ledger's integer base units;
- `policy`: the failure rules (retries, no-progress) every slice runner applies.

Nothing here imports Django or the rest of `dcp`.
"""
