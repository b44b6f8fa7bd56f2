"""FLOPs of one MTT + DynaDistill iteration (m = 3) against plain MTT, at a tiny size (issue 23).

    python -m bench.dynadistill_flops

One outer iteration of MTT (``method.step``) counted with ``bench.common.flops_of``, with the
``scratch`` selection (MTT's own draw) and with ``dynadistill`` (3 segments scored, the chosen one
replayed for the update): ConvNet width 32 on 32x32x3 fake data, 10 classes, ipc 2, 10 student
steps on the whole set, 3 synthetic experts. One thread; the seconds are one iteration's wall
time and move with the machine's load, the FLOPs do not.
"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from bench.common import fake_data, flops_of, machine
from ddtool.lookup import build_net
from ddtool.methods.mtt import MTT, MTTOptions
from ddtool.nets import NetSpec
from ddtool.recipe import load_recipe
from ddtool.runtime.distill.planning import build_context
from ddtool.selection.builtin import DynaDistill, Scratch
from ddtool.trajectories import Trajectories, flat_params, param_layout

def ctx_for(selection, width=32, ipc=2, steps=10):
    data = fake_data(10, 10, 3, 32)
    recipe = load_recipe(None, ["distill.method=mtt", f"net.width={width}", f"distill.ipc={ipc}", "distill.lr_img=100"])
    spec = NetSpec("convnet", {"width": width})
    torch.manual_seed(0)
    net = build_net(spec, 3, 10, 32)
    init = flat_params(net)
    snaps = {f"e{i}": torch.stack([init + 0.05 * (e + i) * torch.randn_like(init) for e in range(4)]) for i in range(3)}
    traj = Trajectories(spec, param_layout(net), 3, list(snaps), loader=snaps.__getitem__)
    method = MTT()
    ctx = build_context(recipe, data, "cpu", method=method, trajectories=traj, selection=selection,
                        options=MTTOptions(syn_steps=steps, expert_epochs=2, max_start_epoch=2))
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    ctx.synthetic = syn
    opt = method.make_optimizer(ctx, syn)
    ctx.optimizer = opt
    return ctx, syn, opt, method

out = {"machine": machine(), "size": "ConvNet width 32, 32x32x3, 10 classes, ipc 2, syn_steps 10, batch = whole set"}
for name, sel in (("mtt", Scratch()), ("mtt+dynadistill m=3", DynaDistill(m=3))):
    ctx, syn, opt, method = ctx_for(sel)
    torch.manual_seed(1)
    method.step(ctx, syn, opt, 0)  # warm-up
    fl = flops_of(lambda: method.step(ctx, syn, opt, 1))
    t = time.perf_counter(); method.step(ctx, syn, opt, 2); s = time.perf_counter() - t
    out[name] = {"gflop_per_iteration": round(fl / 1e9, 4), "seconds_one_iteration": round(s, 2)}
print(json.dumps(out, indent=1))
