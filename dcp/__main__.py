"""`python -m dcp ...`: the `dcp` command."""

from dcp.cli import main

main()
