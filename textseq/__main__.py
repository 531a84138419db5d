"""`python -m textseq` is the `textseq` command."""

from textseq.cli import main

main()
