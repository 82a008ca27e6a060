"""Support that the test suite and the benchmarks share: a live portal, synthetic workers.

Nothing here is part of the portal or the client; both `tests/` and `bench/` import it.
"""
