"""``python -m vistrace``: the command line."""

from .cli import main

main()
