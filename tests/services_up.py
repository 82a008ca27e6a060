"""Exit 0 when the PostgreSQL and Redis URLs given as arguments both accept connections."""

from __future__ import annotations

import sys

from testkit.services import answers

if __name__ == "__main__":
    sys.exit(0 if all(answers(url) for url in sys.argv[1:]) else 1)
