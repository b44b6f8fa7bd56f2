"""The ``ddtool`` command line: a thin layer over ddtool.runtime."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ddtool.cli.common import err, state
from ddtool.cli.distill_cmd import distill_cmd
from ddtool.cli.eval_cmd import eval_cmd
from ddtool.cli.inspect_cmd import inspect_cmd
from ddtool.cli.plugins_cmd import plugins_cmd
from ddtool.cli.pretrain_cmd import pretrain_cmd
from ddtool.cli.recipes_cmd import recipes_cmd
from ddtool.cli.report_cmd import report_cmd
from ddtool.cli.store_cmds import store_app
from ddtool.version import __version__

app = typer.Typer(
    name="ddtool",
    help="Dataset distillation: pretrain model pools, distil tiny synthetic sets, evaluate and inspect them.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ddtool {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    store: Annotated[Optional[Path], typer.Option(
        "--store", help="Artifact store folder (default: $DDTOOL_HOME, else the user data dir).",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    state.store_root = store
    state.quiet = quiet


app.command("pretrain", help="Train a pool of early-stage models (Acc-DD step 1) and store it.")(pretrain_cmd)
app.command("distill", help="Distil a synthetic set with a recipe and store it.")(distill_cmd)
app.command("eval", help="Train fresh networks on synthetic sets; report real test accuracy.")(eval_cmd)
app.command("report", help="One row per set: accuracy, random-real baseline, full-data bound, DD-Ranking scores, cost, storage.")(report_cmd)
app.command("inspect", help=(
    "Show a synthetic set as an image grid, a pool's models, accuracy curves, or the store. The terminal grid is "
    "fitted to the screen (a note says what was left out; --size and --max-per-class override; a pipe or a file "
    "gets every image); --png writes every image, one column per class."))(inspect_cmd)
app.command("recipes", help="List the shipped recipes: what each runs, its wall time on digits and at the paper's scale.")(recipes_cmd)
app.command("plugins", help=(
    "List registered methods, strategies, schedules, datasets and nets (descriptions cut to the terminal's width); "
    "'ddtool plugins NAME' shows one whole."))(plugins_cmd)
app.add_typer(store_app, name="store")

_commands_added = False


def add_plugin_commands() -> None:
    """Let plugins add commands (ddtool_register_commands) once per process."""
    global _commands_added
    if _commands_added:
        return
    from ddtool.plugins import plugin_manager

    plugin_manager().hook.ddtool_register_commands(app=app)
    _commands_added = True


def main() -> None:
    from rich.markup import escape

    from ddtool.errors import DDToolError

    try:
        add_plugin_commands()
    except DDToolError as exc:  # e.g. a broken plugin: one line naming it, never a traceback
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code)
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        app()
        return
    # a torchrun worker: once the command and the atexit handlers (which leave the process group)
    # are done, exit without the interpreter's and C++'s teardown, where a still-joinable thread of
    # the process group's now and then aborts a finished process ("terminate called without an
    # active exception", SIGABRT) and turns a good run into a failed one
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
