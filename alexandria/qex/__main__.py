"""`python -m alexandria.qex`: the `qex` command."""

from .cli import main

main()
