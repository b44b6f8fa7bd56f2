"""IDC (or DREAM+, its subclass) on digits for test_processes.py: run in this process (world 1) or as
one rank under torchrun (``python -m torch.distributed.run --nproc-per-node 2
tests/distributed/idc_worker.py OUT [idc|dream]``).

Rank 0 saves the final images and, for every outer loop, whether the network every rank trained
was bit-identical across ranks (a digest of its parameters, gathered when the loop ends)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.lookup import load_dataset
from ddtool.methods.dream import DREAM, DREAMOptions
from ddtool.methods.idc import IDC, IDCOptions
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.runtime.distill.planning import build_context
from ddtool.runtime.distributed import process_group as distributed
from ddtool.selection.builtin import Scratch

ITERATIONS = 3


class Spy(Scratch):
    """Scratch selection that checks, after each outer loop, that every rank holds the same network."""

    def __init__(self) -> None:
        self.identical: list[bool] = []

    def after_step(self, ctx: DistillContext, it: int, net: nn.Module) -> None:
        flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
        self.identical.append(len(set(distributed.all_gather_object(digest))) == 1)


def run(out: Path, name: str = "idc") -> None:
    torch.set_num_threads(1)
    device = distributed.init(torch.device("cpu"))
    data = load_dataset("digits")
    spy = Spy()
    shared = dict(factor=2, inner_loops=2, net_steps=3, net_batch=16, batch_syn_max=8)
    method: IDC
    if name == "dream":
        # clusterings only on each outer loop's fresh network (interval = inner_loops, no warm-up): a
        # k-means assignment is discontinuous, so on a network trained data-parallel (equal to one
        # process's to ~1e-7) it can flip, and from there the runs part like two seeds
        method, options = DREAM(), DREAMOptions(**shared, interval=2, warmup_epochs=0, kmeans_iter=10)
    else:
        method, options = IDC(), IDCOptions(**shared)
    torch.manual_seed(0)
    ctx = build_context(DistillSection(ipc=1, batch_real=8, augment="color_crop_cutout"), data, device,
                        net_spec=NetSpec("convnet", {"width": 8}), iterations=ITERATIONS, selection=spy,
                        schedule=NoPerturbation(), options=options, method=method, impl="vectorized")
    ctx.shard = distributed.class_shard(data.num_classes)  # type: ignore[attr-defined]
    syn = method.init_synthetic(ctx)
    start = syn.images.clone()
    syn.images.requires_grad_(True)
    ctx.synthetic = syn
    opt = method.make_optimizer(ctx, syn)
    losses = [method.step(ctx, syn, opt, it) for it in range(ITERATIONS)]
    if distributed.is_main():
        torch.save({"images": syn.images.detach(), "start": start, "losses": losses, "identical": spy.identical,
                    "world": distributed.current().size}, out)
    distributed.shutdown()


if __name__ == "__main__":
    run(Path(sys.argv[1]), *sys.argv[2:3])
    # as ddtool's own torchrun workers (ddtool.cli): a normal interpreter exit after the process
    # group sometimes aborts in a backend thread (SIGABRT), failing a run that finished
    sys.stdout.flush()
    os._exit(0)
