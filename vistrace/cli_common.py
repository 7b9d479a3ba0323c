"""What every command module shares: exit codes, the rich console, and the error exit."""

from __future__ import annotations

import typer

EXIT_OK, EXIT_RUNTIME, EXIT_REJECTED = 0, 1, 2


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(message: str, code: int, hint: str | None = None) -> None:
    err = _console(stderr=True)
    err.print(f"[bold red]error:[/] {message}", markup=True)
    if hint:
        err.print(f"[dim]hint: {hint}[/]", markup=True)
    raise typer.Exit(code)
