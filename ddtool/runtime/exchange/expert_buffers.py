"""Expert trajectories from the reference codes' buffers into the store:
``ddtool store import DIR --kind trajectories``.

MTT's ``buffer.py`` (GeorgeCazenavette/mtt-distillation) and DATM's ``buffer_FTD.py``
(NUS-HPC-AI-Lab/DATM) save their experts as ``replay_buffer_{i}.pt`` files: each is ``torch.save`` of a
list of experts, each expert a list of timestamps (one per epoch, epoch 0 = the initial weights),
each timestamp the network's parameters in ``model.parameters()`` order. The files are read with
``torch.load(weights_only=True)`` (tensors, lists and numbers only: nothing else is unpickled) one
at a time; every expert is checked against the parameter layout of the ddtool network it is
declared to be (the count and every shape, in order) and stored as ddtool's own expert blob
(``[epochs + 1, P]``, :func:`ddtool.trajectories.expert_artifact`), then one index
``trajectories/NAME`` names them, as ``ddtool pretrain --trajectories`` writes it: an mtt or datm run
reads imported experts as it reads trained ones. The index's ``training`` says they were imported
(from where, which files with their sha256, how many experts of how many epochs); the ``import``
run record names each file by its sha256.

What the buffers cannot tell is the data the experts were trained on: the index records the
dataset it is imported for, so experts of ZCA-whitened CIFAR-10 belong to ``cifar10+zca`` (the
reference's ``--zca``), and experts of plain CIFAR-10 to ``cifar10``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.lookup import check_net
from ddtool.nets import NetSpec
from ddtool.runtime.exchange.formats import load_weights_only
from ddtool.runtime.run_records import io_entry, run_record
from ddtool.store import Artifact, Store
from ddtool.store.meta import TRAJECTORIES_KIND, DatasetSignature
from ddtool.store.refs import check_name
from ddtool.trajectories import Layout, Trajectories, check_parameters_only, expert_artifact, param_layout

BUFFER_GLOB = "replay_buffer_*.pt"  # MTT's buffer.py and DATM's buffer_FTD.py name their files so
SOURCE = "expert buffers in the MTT/DATM reference format (replay_buffer_*.pt)"
_FIX_NET = ("give the [net] the experts were trained with (--recipe, --net, --set net.width=... / net.depth=... / "
            "net.norm=...)")


@dataclass
class TrajectoriesImport:
    trajectories: Trajectories
    artifact: Artifact
    run_id: str
    files: list[dict[str, Any]]  # {"name", "sha256", "experts"} per file, in order


def buffer_files(path: Path) -> list[Path]:
    """The buffer files ``path`` names: itself (a .pt file), or a folder's ``replay_buffer_{i}.pt`` in
    the order of ``i`` (the order the reference writes and reads them)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UsageError(f"'{path}' not found: give a replay_buffer_*.pt file or the folder that holds them")
    found = [p for p in path.glob(BUFFER_GLOB) if re.fullmatch(r"replay_buffer_\d+\.pt", p.name)]
    if not found:
        raise UsageError(f"'{path}' holds no replay_buffer_N.pt files; give the folder MTT's buffer.py or DATM's "
                         "buffer_FTD.py wrote them to (BUFFER_PATH/DATASET/MODEL), or one of the files")
    return sorted(found, key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):  # a buffer file can be gigabytes: not read whole
            h.update(chunk)
    return h.hexdigest()


def read_buffer(path: Path) -> list[list[list[torch.Tensor]]]:
    """A buffer file's experts, each a list of timestamps of parameter tensors; one line naming the
    file and the place when it holds anything else (nothing but tensors, lists and numbers is built)."""
    obj = load_weights_only(path)
    shape = "a list of experts, each a list of epochs, each a list of parameter tensors"
    if not isinstance(obj, (list, tuple)) or not obj:
        raise UsageError(f"'{path}' holds {_what(obj)}, not an expert buffer ({shape})")
    for e, expert in enumerate(obj):
        if not isinstance(expert, (list, tuple)) or len(expert) < 2:
            raise UsageError(f"'{path}' expert {e} is {_what(expert)}; an expert buffer is {shape} "
                             "(at least epoch 0 and epoch 1)")
        for t, stamp in enumerate(expert):
            if not isinstance(stamp, (list, tuple)) or not stamp:
                raise UsageError(f"'{path}' expert {e} epoch {t} is {_what(stamp)}, not a list of parameter tensors")
            for k, p in enumerate(stamp):
                if not isinstance(p, torch.Tensor) or not p.is_floating_point():
                    raise UsageError(f"'{path}' expert {e} epoch {t} entry {k} is {_what(p)}, not a float "
                                     "parameter tensor")
    return [list(map(list, expert)) for expert in obj]


def _what(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor {list(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)}"
    return f"a {type(obj).__name__}"


def check_expert(expert: list[list[torch.Tensor]], layout: Layout, spec: NetSpec, epochs: int, where: str) -> None:
    """Refuse an expert whose parameters are not ``layout``'s, or whose epochs are not ``epochs``,
    in one line naming the first difference."""
    if len(expert) - 1 != epochs:
        raise UsageError(f"{where} has {len(expert) - 1} epochs, the first expert {epochs}; import the files of "
                         "one buffer run (one --train_epochs) together")
    want = [s for _, s in layout]
    for t, stamp in enumerate(expert):
        have = [tuple(p.shape) for p in stamp]
        if have == want:
            continue
        at = f"{where} epoch {t}" if t else where
        if len(have) != len(want):
            raise UsageError(f"{at}: parameter shapes do not match {spec.to_json()}: {len(have)} parameter tensors, "
                             f"the network has {len(want)}; {_FIX_NET}")
        k = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
        raise UsageError(f"{at}: parameter shapes do not match {spec.to_json()}: parameter {k} ({layout[k][0]}) is "
                         f"{list(have[k])}, the network's is {list(want[k])}; {_FIX_NET}")


def snapshots_of(expert: list[list[torch.Tensor]], where: str) -> torch.Tensor:
    """``[epochs + 1, P]``: every timestamp as one flat float32 row, in the layout's order."""
    snaps = torch.stack([torch.cat([p.detach().reshape(-1).float() for p in stamp]) for stamp in expert])
    if not torch.isfinite(snaps).all():
        raise UsageError(f"{where} holds NaN or infinite parameters (a diverged expert); leave its file out")
    return snaps


def import_trajectories(store: Store, path: Path, data: ImageData, net: NetSpec, name: str,
                        source: str | None = None) -> TrajectoriesImport:
    """Store the experts of the buffer file(s) ``path`` (:func:`buffer_files`) as ``trajectories/NAME``
    of ``net`` on ``data``; ``source``: what made them (recorded in the index, e.g. the reference
    and its commit). The first file is read and checked before the run record is written (a buffer
    of another network leaves the store as it was); each later one inside the run."""
    start = time.perf_counter()
    check_name(name)
    probe = check_net(net, data.channels, data.num_classes, data.resolution)
    check_parameters_only(probe, "an imported expert trajectory")
    layout = param_layout(probe)
    files = buffer_files(path)
    hashes = [file_sha256(f) for f in files]
    signature = DatasetSignature.of(data)
    first = read_buffer(files[0])
    epochs = len(first[0]) - 1
    for e, expert in enumerate(first):
        check_expert(expert, layout, net, epochs, f"'{files[0].name}' expert {e}")
    listed: list[dict[str, Any]] = []
    with run_record(store, "import", elapsed=time.perf_counter() - start,
                    source={"path": str(path), "kind": TRAJECTORIES_KIND,
                            "files": [{"name": f.name, "sha256": h} for f, h in zip(files, hashes)]},
                    inputs=[{"ref": f.name, "digest": h, "kind": "file", "role": "source"}
                            for f, h in zip(files, hashes)],
                    artifact_name=name, artifact_kind=TRAJECTORIES_KIND, checkpoints=[]) as run:
        record, digests = run.record, []
        try:
            for i, (f, h) in enumerate(zip(files, hashes)):
                experts = first if i == 0 else read_buffer(f)
                for e, expert in enumerate(experts):
                    where = f"'{f.name}' expert {e}"
                    check_expert(expert, layout, net, epochs, where)
                    with store.lock():  # blob and record under one lock: gc keeps the expert from here on
                        digest = store.put_blob(*expert_artifact(snapshots_of(expert, where), signature, net))
                        record["checkpoints"].append({"expert": len(digests), "digest": digest})
                        run.write()
                    digests.append(digest)
                listed.append({"name": f.name, "sha256": h, "experts": len(experts)})
                first = experts = []  # stored: let the file's tensors go before the next is read
        except BaseException:
            record["checkpoints"] = []  # an import does not resume: a failed one keeps nothing, gc may free it
            raise
        training = {"imported": True, "source": source or SOURCE, "path": str(path), "files": listed,
                    "experts": len(digests), "epochs": epochs, "zca": getattr(data, "zca", None) is not None}
        traj = Trajectories(net, layout, epochs, digests, training, signature=signature)
        art = store.put(TRAJECTORIES_KIND, name, *traj.to_artifact())
        traj.digest = art.digest
        record["checkpoints"] = []  # the index names the experts now
        run.complete(outputs=[io_entry(art, TRAJECTORIES_KIND)],
                     metrics={"experts": len(digests), "epochs": epochs, "files": len(files)})
    return TrajectoriesImport(traj, art, run.id, listed)
