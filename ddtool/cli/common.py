"""Shared CLI plumbing: consoles, error handling, the store option, recipes and data, rich progress."""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ddtool.data import ImageData, load_dataset
from ddtool.errors import DDToolError
from ddtool.recipe import Recipe, load_recipe
from ddtool.cli.signals import SIGTERM_EXIT, sigterm_as_interrupt
from ddtool.store import Store, open_store

console = Console()  # data
err = Console(stderr=True)  # diagnostics and progress

F = TypeVar("F", bound=Callable[..., Any])


class State:
    store_root: Path | None = None
    quiet: bool = False


state = State()


def get_store(write: bool = False) -> Store:
    """The store the command names, refused in one line when its path cannot be a store folder
    (``write``: also when it cannot be created or written to; ask before the command's work)."""
    store = open_store(state.store_root)
    store.check_usable(write)
    return store


def recipe_with(path: Path | None, sets: list[str] | None, **shortcuts: Any) -> Recipe:
    """A recipe file (or the defaults) plus --set overrides plus the command's own options."""
    extra = [f"{key}={json.dumps(value)}" for key, value in shortcuts.items() if value is not None]
    return load_recipe(path, [*(sets or []), *extra])


def recipe_data(recipe: Recipe, data_root: Path | None) -> ImageData:
    """The recipe's dataset (``--data-root`` over its ``[data] root``)."""
    return load_dataset(recipe.data.dataset, data_root or recipe.data.root or None, recipe.data.download)


def guarded(fn: F) -> F:
    """Turn ddtool's errors into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with sigterm_as_interrupt() as term:  # a cluster's SIGTERM takes Ctrl-C's path, in the CLI only
            try:
                return fn(*args, **kwargs)
            except DDToolError as exc:
                # escape: messages name recipe sections like [distill], which rich would take for markup
                err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code)
            except KeyboardInterrupt as exc:
                _print_interrupted(exc, "interrupted (SIGTERM)" if term.fired else "interrupted")
                raise typer.Exit(SIGTERM_EXIT if term.fired else 130)
            except OSError as exc:
                err.print(f"[bold red]error:[/] {escape(str(exc.strerror or exc))}: {escape(str(exc.filename or ''))}",
                          highlight=False, soft_wrap=True)
                raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _print_interrupted(exc: KeyboardInterrupt, what: str) -> None:
    from ddtool.runtime.distill import RunInterrupted

    if isinstance(exc, RunInterrupted):  # only distill saves a checkpoint to resume from
        run_id, at = exc.run_id, exc.iteration
        where = f"its checkpoint at iteration {at}" if at is not None else "the start (no checkpoint yet)"
        err.print(f"[yellow]{what}[/]: run {run_id} can go on from {where}: "
                  f"ddtool distill --resume {run_id}", highlight=False, soft_wrap=True)
    else:
        err.print(f"[yellow]{what}[/]; nothing was written for the work in progress", highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        self.progress.update(self.task_id, advance=n, info=info)


class RichReporter:
    """Progress bars with ETA and the latest loss, on stderr."""

    def note(self, text: str) -> None:
        err.print(f"ddtool: {text}", highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[_RichTask]:
        if state.quiet:
            from ddtool.progress import _SilentTask

            yield _SilentTask()  # type: ignore[misc]
            return
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                      console=err, transient=False) as progress:
            yield _RichTask(progress, progress.add_task(description, total=total, info=""))
