"""Shared CLI plumbing: consoles, error handling, the store option, recipes and data, rich progress."""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ddtool.cli.signals import SIGTERM_EXIT, sigterm_as_interrupt
from ddtool.data import ImageData
from ddtool.errors import DDToolError
from ddtool.lookup import load_dataset
from ddtool.recipe import Recipe, load_recipe
from ddtool.recipe_source import find_recipe
from ddtool.store import Store, open_store

console = Console()  # data
err = Console(stderr=True)  # diagnostics and progress

F = TypeVar("F", bound=Callable[..., Any])


class State:
    store_root: Path | None = None
    quiet: bool = False
    main: bool = True  # False on ranks other than 0 of a distributed command: no notes, no results


state = State()


def get_store(write: bool = False) -> Store:
    """The store the command names, refused in one line when its path cannot be a store folder
    (``write``: also when it cannot be created or written to; ask before the command's work)."""
    store = open_store(state.store_root)
    store.check_usable(write)
    return store


def recipe_file(ref: str | Path | None) -> Path | None:
    """The file a ``--recipe`` names (a path, or a shipped recipe's name); when a file in the current
    folder is taken over a shipped recipe of the same name, one line on stderr says so."""
    if ref is None:
        return None
    found = find_recipe(ref)
    if found.note and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 says it once
        err.print(f"ddtool: {found.note}", highlight=False, markup=False, soft_wrap=True)
    return found.path.resolve()  # a path with its folder: found once, not looked up (and noted) again


def recipe_with(path: str | Path | None, sets: list[str] | None, **shortcuts: Any) -> Recipe:
    """A recipe file or shipped recipe (or the defaults) plus --set overrides plus the command's own options."""
    extra = [f"{key}={json.dumps(value)}" for key, value in shortcuts.items() if value is not None]
    return load_recipe(recipe_file(path), [*(sets or []), *extra])


def recipe_data(recipe: Recipe, data_root: Path | None) -> ImageData:
    """The recipe's dataset (``--data-root`` over its ``[data] root``)."""
    return load_dataset(recipe.data.dataset, data_root or recipe.data.root or None, recipe.data.download)


def join_processes(device: str) -> Any:
    """The command's device, joined to the other processes when torchrun launched several
    (``ddtool.runtime.distributed.process_group``): each rank on its own CUDA device; ranks other than 0 show no
    progress and print no results. The process group is left when the process exits."""
    import atexit

    from ddtool.runtime.distributed import process_group as distributed
    from ddtool.runtime.supervised import resolve_device

    dev = distributed.init(resolve_device(device))
    if not distributed.is_main():
        state.quiet, state.main = True, False
    # at exit a command may have failed on one rank only: no last barrier the others might not reach
    atexit.register(distributed.shutdown, together=False)
    return dev


@contextmanager
def distributed_device(device: str) -> Iterator[Any]:
    """:func:`join_processes` for a block: the process group is left when it ends."""
    from ddtool.runtime.distributed import process_group as distributed

    dev = join_processes(device)
    # on an error the group is left at exit (join_processes), after guarded has printed the error:
    # tearing it down here, under a peer that died, could outlast the agent's grace period and lose that line
    yield dev
    distributed.shutdown()


def prints_results() -> bool:
    """Whether this process prints a command's results (not ranks other than 0)."""
    return state.main


def guarded(fn: F) -> F:
    """Turn ddtool's errors into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with sigterm_as_interrupt() as term:  # a cluster's SIGTERM takes Ctrl-C's path, in the CLI only
            try:
                return fn(*args, **kwargs)
            except DDToolError as exc:
                if exc.exit_code == 2 and os.environ.get("RANK", "0") != "0":
                    raise typer.Exit(2)  # a usage error is every rank's: rank 0 says it once
                # escape: messages name recipe sections like [distill], which rich would take for markup
                err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code)
            except KeyboardInterrupt as exc:
                if prints_results():  # one line for the run, from rank 0
                    _print_interrupted(exc, "interrupted (SIGTERM)" if term.fired else "interrupted")
                raise typer.Exit(SIGTERM_EXIT if term.fired else 130)
            except OSError as exc:
                err.print(f"[bold red]error:[/] {escape(str(exc.strerror or exc))}: {escape(str(exc.filename or ''))}",
                          highlight=False, soft_wrap=True)
                raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _print_interrupted(exc: KeyboardInterrupt, what: str) -> None:
    from ddtool.runtime.distill import RunInterrupted
    from ddtool.runtime.pretrain.expert_trajectories import TrajectoriesInterrupted

    if isinstance(exc, RunInterrupted):  # distill and trajectories save what a resume needs
        run_id, at = exc.run_id, exc.iteration
        where = f"its checkpoint at iteration {at}" if at is not None else "the start (no checkpoint yet)"
        err.print(f"[yellow]{what}[/]: run {run_id} can go on from {where}: "
                  f"ddtool distill --resume {run_id}", highlight=False, soft_wrap=True)
    elif isinstance(exc, TrajectoriesInterrupted):
        err.print(f"[yellow]{what}[/]: run {exc.run_id} stored {exc.finished} of {exc.total} experts and can go on: "
                  f"ddtool pretrain --resume {exc.run_id}", highlight=False, soft_wrap=True)
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
        if not state.main:
            return
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
