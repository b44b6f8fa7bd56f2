"""``--nproc N``: the same command line as N processes, launched by torch's own launcher.

``ddtool distill --nproc 2 ...`` is ``torchrun --standalone --nproc-per-node 2 -m ddtool distill ...``
run in this process (``torch.distributed.run``): the elastic agent starts the workers, watches them
and stops the others when one fails. Its own multi-line failure report is silenced; each worker
prints its error line, and this prints one summary line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Optional

import typer

from ddtool.cli.common import err
from ddtool.errors import UsageError

Nproc = Annotated[Optional[int], typer.Option(
    "--nproc", metavar="N", help=(
        "Run as N processes on this machine through torch.distributed.run (torchrun): distill splits the "
        "classes, eval the repeats, pretrain the pool's models; one result, written by rank 0."))]


def exit_code(code: int) -> int:
    """A worker's exit status as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - code if code < 0 else (code or 1)


def run_torchrun(nproc: int, argv: list[str]) -> int:
    """Run ``python -m ddtool ARGV`` as ``nproc`` processes on this machine; the exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "ddtool"])
    args.training_script_args = list(argv)  # set, not parsed: torchrun's parser would take --n for its own options
    # the agent's own reports (each module's logger has its level set) would repeat the workers' lines
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        rank, first = exc.get_first_failure()  # the cause; the agent then stopped the others
        code = exit_code(first.exitcode)
        how = f"killed by signal {-first.exitcode}" if first.exitcode < 0 else f"exit code {code}"
        if code != 2:  # a usage error was said once, by rank 0; anything else may need the count
            err.print(f"[bold red]error:[/] {len(exc.failures)} of {nproc} processes failed; the first was rank "
                      f"{rank} ({how})", highlight=False)
        return code
    except SignalException as exc:  # SIGTERM/SIGINT to the launcher: the agent has stopped the workers
        # exit now: the agent's rendezvous threads, torn down by interpreter shutdown, abort with a C++ message
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + int(exc.sigval))
    return 0


def relaunch(nproc: int | None) -> None:
    """``--nproc N``: run this same command line as N processes through ``torch.distributed.run``
    (torchrun, standalone on this machine) and exit with its status. Returns when there is nothing
    to relaunch: no --nproc, 1, or already a torchrun worker."""
    if nproc is None or nproc == 1 or "RANK" in os.environ:
        return
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    raise typer.Exit(run_torchrun(nproc, _without_nproc(sys.argv[1:])))


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out
