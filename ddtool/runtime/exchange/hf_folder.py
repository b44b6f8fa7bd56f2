"""A synthetic set as a folder the Hugging Face ``datasets`` library loads, with a dataset card:
``ddtool store export REF --format hf DIR`` and ``ddtool store import DIR``.

Layout (``datasets.load_dataset(DIR)`` reads it offline as an imagefolder with a metadata file)::

    DIR/README.md                     the card: the Hub's YAML header, then the same facts as prose
    DIR/train/CLASS/NNNN.png          one PNG per training image, as --format imagefolder writes them
    DIR/train/metadata.jsonl          {"file_name", "label"[, "soft_label"]} per image
    DIR/ddtool/synthetic.safetensors  the stored artifact itself, byte for byte (its digest is in the card)
    DIR/ddtool/zca.safetensors        a ZCA-whitened set's whitening (mean, transform, inverse)
    DIR/ddtool/card.json              the card's ddtool section again (for a header an editor rewrote)

The YAML header holds what the Hub reads (``configs``: the train split is ``train/**``;
``dataset_info``: the features, the label names; tags, size) and a ``ddtool`` section generated
from the store: how the set was made (method, recipe, budget, pool or expert trajectories,
seeds, ddtool version), every evaluation recorded for it (protocol, net, mean ± std, repeats) and,
when given, its ``ddtool report`` row. Each key is written on one line as JSON, which is YAML
too: the header reads back with ``json`` alone, no YAML library and nothing unpickled.

Import prefers ``ddtool/synthetic.safetensors`` (checked against the card's digest, then stored
unchanged: the same digest, so the card's numbers name this very set); without it, the PNGs and
labels are read back as pixels and normalised with the card's mean and std (a new digest), with
the card's learned step size (``learned_lr``) kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ddtool.version import __version__
from ddtool.errors import DDToolError, UsageError
from ddtool.runtime.exchange.formats import export_imagefolder
from ddtool.runtime.run_records import io_entry, run_record
from ddtool.store import Artifact, Store
from ddtool.store.meta import PoolMeta, SyntheticMeta
from ddtool.store.refs import check_name
from ddtool.synthetic import SyntheticSet

CARD = "README.md"
SPLIT = "train"
BLOB = "ddtool/synthetic.safetensors"
ZCA_FILE = "ddtool/zca.safetensors"
SECTION_FILE = "ddtool/card.json"  # the card's ddtool section again, for a header an editor rewrote
_SECTION = "ddtool"


# -- what the card says -------------------------------------------------------------------------
def _evaluations(store: Store, digest: str) -> list[dict[str, Any]]:
    """Every complete eval record of the set (hard or soft labels), oldest first."""
    out = []
    _, used = store.runs_of(digest)
    for rec in sorted(used, key=lambda r: r.get("id", "")):
        if rec.get("command") != "eval" or rec.get("status") != "complete" or "curve" in rec:
            continue
        m, settings = rec.get("metrics") or {}, rec.get("settings") or {}
        if "mean" not in m:
            continue
        first = int(settings.get("seed", 0))
        entry = {"run": rec["id"], "protocol": m.get("protocol"), "net": m.get("net"), "mean": m["mean"],
                 "std": m.get("std"), "repeats": m.get("repeats"), "epochs": m.get("epochs"),
                 "labels": m.get("labels", "hard"),
                 "seeds": [first + i for i in range(len(m.get("accuracies") or []))]}
        if m.get("labels") == "soft":
            entry.update(teacher=m.get("teacher"), temperature=m.get("temperature"))
        out.append(entry)
    return out


def _seed_of(store: Store, digest: str) -> dict[str, int]:
    """{"seed": the seed a parent (pool, trajectories) records} when it is here and records one."""
    try:  # pools and trajectories keep their seed under the same key
        seed = PoolMeta.from_metadata(store.blob_metadata(digest)).seed
    except (DDToolError, ValueError):  # a parent whose blob is gone: its ref and digest still go into the card
        return {}
    return {"seed": seed} if seed is not None else {}


def _made(store: Store, digest: str) -> dict[str, Any]:
    """How the set was made, from its lineage (the distill record, its pool or trajectories)."""
    src = store.lineage(digest, depth=1)["made_from"]
    out: dict[str, Any] = {}
    for kind in ("pool", "trajectories", "synthetic"):
        if src.get(kind):
            out[kind] = [{"ref": p["ref"], "digest": p["digest"], **_seed_of(store, p["digest"])} for p in src[kind]]
    if "recipe" in src:
        out["recipe"] = {k: v for k, v in src["recipe"].items() if v is not None}
    if "run" in src:
        out["run"] = {k: v for k, v in src["run"].items() if v is not None}
    if "file" in src:
        out["file"] = src["file"]
    return out


def card_data(store: Store, art: Artifact, meta: dict[str, str], report: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """The card's ``ddtool`` section: the set's own metadata, its lineage, its evaluations, its report row."""
    info = SyntheticMeta.from_metadata(meta)
    sig = info.signature
    data: dict[str, Any] = {
        "ref": art.ref, "digest": art.digest, "exported_by": f"ddtool {__version__}",
        "dataset": sig.dataset, "classes": sig.class_names(), "shape": sig.shape, "zca": sig.zca,
        "method": info.method, "ipc": info.ipc, "factor": info.factor or 1, "selection": info.selection,
        "schedule": info.schedule, "net": json.loads(info.net) if info.net else None, "seed": info.seed,
        "iterations": info.iterations, "ddtool_version": info.version, "recipe_sha256": info.recipe_sha256,
        "mean": list(info.mean) if info.mean else None, "std": list(info.std) if info.std else None,
        "learned_lr": info.learned_lr, "parents": list(info.parents or []),
        "made_from": _made(store, art.digest), "evaluations": _evaluations(store, art.digest),
    }
    if report is not None:
        data["report"] = report
    return {k: v for k, v in data.items() if v is not None}


def _size_category(n: int) -> str:
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M"


def _pct(x: Any) -> str:
    return f"{100 * float(x):.2f}" if isinstance(x, (int, float)) else "?"


def _num(x: Any, fmt: str) -> str:
    return format(float(x), fmt) if isinstance(x, (int, float)) else "?"


def render_card(data: dict[str, Any], count: int, soft: dict[str, Any] | None = None) -> str:
    """README.md: the YAML header (one JSON value per key), then prose for people."""
    classes = data.get("classes") or []
    features: list[dict[str, Any]] = [
        {"name": "image", "dtype": "image"},
        {"name": "label", "dtype": {"class_label": {"names": {str(i): c for i, c in enumerate(classes)}}}}]
    if soft:
        features.append({"name": "soft_label", "sequence": "float32"})
    name = data["ref"].split(":")[0].split("/", 1)[-1]
    header = {
        "pretty_name": f"{name}: {data.get('method', 'synthetic')} distilled {data.get('dataset')}",
        "task_categories": ["image-classification"],
        "tags": ["dataset-distillation", "synthetic", "ddtool"],
        "size_categories": [_size_category(count)],
        # features in the config, where the folder loader takes them (ClassLabel names for "label");
        # in dataset_info too, where the Hub's viewer reads them
        # the config is named after the set: `datasets` caches a local folder under its name, config
        # name and a hash of the config alone, so with "default" a folder exported again with another
        # set (same name, same classes) loaded the first one's cached rows
        "configs": [{"config_name": f"ddtool-{data['digest'][:12]}",
                     "data_files": [{"split": SPLIT, "path": f"{SPLIT}/**"}],
                     "features": features}],
        "dataset_info": {"features": features},
        _SECTION: data if not soft else {**data, "soft_labels": soft},
    }
    lines = ["---", *(f"{k}: {json.dumps(v, ensure_ascii=False, sort_keys=k == _SECTION)}" for k, v in header.items()),
             "---", "", f"# {name}", ""]
    made = data.get("made_from", {})
    lines += [f"A synthetic training set of **{count} images** distilled from **{data.get('dataset')}** "
              f"({len(classes)} classes) with ddtool, exported from `{data['ref']}` (sha256 `{data['digest']}`).",
              "", "## How it was made", ""]
    facts = [("method", data.get("method")), ("images per class (ipc)", data.get("ipc")),
             ("multi-formation factor", data.get("factor")), ("selection", data.get("selection")),
             ("schedule", data.get("schedule")), ("iterations", data.get("iterations")), ("seed", data.get("seed")),
             ("network", json.dumps(data["net"]) if data.get("net") else None),
             ("recipe", (made.get("recipe") or {}).get("name")), ("recipe sha256", data.get("recipe_sha256")),
             ("ddtool version", data.get("ddtool_version")), ("ZCA whitening (sha256)", data.get("zca"))]
    lines += [f"- {k}: `{v}`" for k, v in facts if v is not None]
    for kind in ("pool", "trajectories", "synthetic"):
        for p in made.get(kind, []):
            seed = f", seed {p['seed']}" if "seed" in p else ""
            lines.append(f"- {kind}: `{p['ref']}` (sha256 `{p['digest']}`{seed})")
    if data.get("zca"):
        lines += ["", f"The set was distilled on ZCA-whitened images; the PNGs are un-whitened pixels. "
                      f"`{ZCA_FILE}` holds the whitening (safetensors: mean, transform, inverse) when it was known."]
    lines += ["", "## Evaluations recorded", ""]
    evals = data.get("evaluations") or []
    if evals:
        lines += ["| protocol | net | labels | accuracy (%) | repeats | epochs | run |", "|---|---|---|---|---|---|---|"]
        for e in evals:
            labels = e.get("labels", "hard") + (f" ({e.get('teacher')}, T {e.get('temperature')})"
                                                if e.get("labels") == "soft" else "")
            lines.append(f"| {e.get('protocol')} | {e.get('net')} | {labels} | {_pct(e.get('mean'))} ± "
                         f"{_pct(e.get('std'))} | {e.get('repeats')} | {e.get('epochs')} | `{e.get('run')}` |")
    else:
        lines.append("None recorded in the store it was exported from.")
    rep = data.get("report")
    if rep:
        lines += ["", "## Report row (`ddtool report`)", "",
                  f"- accuracy {_pct(rep.get('accuracy_mean'))} ± {_pct(rep.get('accuracy_std'))} % "
                  f"({rep.get('protocol')}, {rep.get('net')}, {rep.get('repeats')} repeats)",
                  f"- random real images of the same ipc: {_pct(rep.get('random_mean'))} ± "
                  f"{_pct(rep.get('random_std'))} % ({rep.get('random_subsets')} subsets); full data "
                  f"{_pct(rep.get('full_mean'))} %",
                  f"- HLR {_pct(rep.get('hlr'))}, IOR {_pct(rep.get('ior'))}, LRS {_num(rep.get('lrs'), '.1f')}",
                  f"- cost: distillation {_num(rep.get('distill_seconds'), '.1f')} s on {rep.get('device') or '?'}, "
                  f"{_num(rep.get('flops'), '.3g')} FLOP; storage {rep.get('storage_bytes')} bytes"]
    if soft and soft.get("learned"):
        lines += ["", f"`soft_label` holds the set's own learned labels (stored as {soft['label_kind']}) as "
                      "probabilities for each image; `label` is the class each image was made for."]
    elif soft:
        lines += ["", f"`soft_label` holds the teacher `{soft['teacher']}`'s softmax outputs at temperature "
                      f"{soft['temperature']} for each image."]
    lines += ["", "## Use", "", "```python", "from datasets import load_dataset", "",
              "ds = load_dataset(\"path/to/this/folder\")", "```", "",
              "`ddtool store import FOLDER` stores it again (from `ddtool/synthetic.safetensors`, the same digest).", ""]
    return "\n".join(lines)


def read_card(folder: Path) -> dict[str, Any]:
    """The YAML header of a card ddtool wrote, read back with ``json`` (one JSON value per key); the
    ``ddtool`` section from ``ddtool/card.json`` when the header no longer has it on one line."""
    path = Path(folder) / CARD
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"'{folder}' has no {CARD}: not a folder written by 'ddtool store export --format hf'")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in [ln.strip() for ln in lines[1:]]:
        raise UsageError(f"{path} has no YAML header between '---' lines")
    end = 1 + [ln.strip() for ln in lines[1:]].index("---")
    out: dict[str, Any] = {}
    for ln in lines[1:end]:
        key, sep, value = ln.partition(":")
        if not sep or not key.strip() or key.startswith((" ", "\t", "-")):
            continue  # a YAML block another tool wrote: only ddtool's one-line keys are read
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            continue
    if _SECTION not in out and (Path(folder) / SECTION_FILE).is_file():
        # the header was rewritten as block YAML (the Hub's metadata editor does): ddtool's copy beside the blob
        try:
            out[_SECTION] = json.loads((Path(folder) / SECTION_FILE).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{Path(folder) / SECTION_FILE} is not readable JSON ({exc})") from None
    return out


# -- export -------------------------------------------------------------------------------------
def _soft_labels(store: Store, syn: SyntheticSet, dataset: str, teacher: str, temperature: float,
                 data_root: str | Path | None) -> tuple[torch.Tensor, dict[str, Any]]:
    from ddtool.lookup import load_dataset
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.soft_labels import soft_setup

    data = load_dataset(dataset, data_root)
    cfg = EvalSection(labels="soft", teacher=teacher, temperature=temperature)
    targets, _, soft = soft_setup(store, cfg, syn, data, torch.device("cpu"))
    if targets is None:  # soft_setup gives none only for hard labels, which cfg does not ask for
        raise DDToolError(f"teacher '{teacher}' gave no soft labels")
    keep = ("ref", "digest", "model", "temperature")
    return targets.float(), {"teacher": soft.get("ref"), **{k: soft[k] for k in keep if k in soft}}


def export_hf(store: Store, ref: str, folder: Path, report: dict[str, Any] | list[Any] | None = None,
              teacher: str | None = None, temperature: float = 4.0,
              data_root: str | Path | None = None) -> dict[str, Any]:
    """Write the set as a ``datasets``-loadable folder with its card (see the module doc).

    ``report``: ``ddtool report --json`` output (a list of rows; the row of this set is used, or
    refused in one line when none is). ``teacher``: also write each image's soft label from that
    teacher (``pool/NAME[:vN][#i]``) at ``temperature``.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"'{folder}' exists and is not an empty folder; choose a new one")
    art, tensors, meta = store.load(ref, kind="synthetic")
    row = None
    if report is not None:
        rows = report if isinstance(report, list) else [report]
        row = next((r for r in rows if isinstance(r, dict) and r.get("digest") == art.digest), None)
        if row is None:
            raise UsageError(f"the report has no row for {art.ref} ({art.digest[:12]}); run "
                             f"'ddtool report {art.ref} --json' and pass that file")
    syn = SyntheticSet.from_artifact(tensors, meta, art.digest)
    soft, targets = None, None
    if teacher:
        targets, soft = _soft_labels(store, syn, syn.signature.dataset or "", teacher, temperature, data_root)
    elif syn.soft_labels is not None:  # the set's own labels, as probabilities per decoded image
        targets, soft = syn.decoded_targets(), {"learned": True, "label_kind": syn.info.label_kind}
    try:
        written = export_imagefolder(store, art.digest, folder / SPLIT)  # PNGs and labels.csv, decoded
        labels_csv = folder / SPLIT / "labels.csv"
        with open(labels_csv, newline="") as fh:
            rows_ = list(csv.DictReader(fh))
        labels_csv.unlink()
        with open(folder / SPLIT / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for i, r in enumerate(rows_):
                entry: dict[str, Any] = {"file_name": r["path"], "label": int(r["label"])}
                if targets is not None:
                    entry["soft_label"] = [round(float(v), 7) for v in targets[i].tolist()]
                fh.write(json.dumps(entry) + "\n")
        (folder / "ddtool").mkdir()
        shutil.copyfile(art.path, folder / BLOB)
        (folder / BLOB).chmod(0o644)
        if syn.signature.zca:
            from ddtool.data.dataset import data_root as resolved_root
            from ddtool.data.zca import find_zca

            zca = find_zca(syn.signature.zca, resolved_root(data_root))
            if zca is not None:  # export_imagefolder above refused a set whose whitening is not known
                zca.save(folder / ZCA_FILE)
        data = card_data(store, art, meta, row)
        (folder / CARD).write_text(render_card(data, len(rows_), soft), encoding="utf-8")
        section = data if not soft else {**data, "soft_labels": soft}
        (folder / SECTION_FILE).write_text(json.dumps(section, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-written folder is left to be shared
        raise
    return {"ref": art.ref, "digest": art.digest, "format": "hf", "path": str(folder), "files": written["files"],
            "decoded": written["decoded"], "evaluations": len(data.get("evaluations", [])),
            "report": row is not None, "soft_labels": soft is not None, "zca": bool(syn.signature.zca)}


# -- import -------------------------------------------------------------------------------------
def is_hf_folder(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CARD).is_file()


def import_hf(store: Store, folder: Path, name: str | None = None) -> dict[str, Any]:
    """Store a folder ``export_hf`` wrote as ``synthetic/NAME`` (default: the card's name), with an
    ``import`` run record that keeps the card's lineage and evaluations (as the card's, not as eval
    records of this store: ``store pull --with-lineage`` carries those)."""
    from safetensors.torch import load as st_load

    from ddtool.store.remote import check_blob_bytes

    start = time.perf_counter()
    folder = Path(folder)
    card = read_card(folder)
    info = card.get(_SECTION)
    if not isinstance(info, dict) or not isinstance(info.get("digest"), str):
        raise UsageError(f"{folder / CARD} has no '{_SECTION}' section with the set's digest: not written by "
                         "'ddtool store export --format hf'")
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(info.get("ref", "")).split(":")[0].split("/", 1)[-1]) or "imported"
    check_name(name)
    blob = folder / BLOB
    if blob.is_file():
        data = blob.read_bytes()
        check_blob_bytes(data, info["digest"])  # the very set the card describes, else refused
        tensors = st_load(data)
        from safetensors import safe_open

        with safe_open(str(blob), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
        how = f"{BLOB} (sha256 matches the card)"
    else:
        tensors, meta = _from_pngs(folder, info)
        how = f"{SPLIT}/ PNGs normalised with the card's mean and std"
    digest = hashlib.sha256((folder / CARD).read_bytes()).hexdigest()
    with run_record(store, "import", elapsed=time.perf_counter() - start,
                    source={"path": str(folder), "format": "hf", "card_sha256": digest, "read": how},
                    card={k: info[k] for k in ("ref", "digest", "made_from", "evaluations", "report", "soft_labels")
                          if k in info},
                    inputs=[{"ref": f"{folder.name}/{CARD}", "digest": digest, "kind": "file", "role": "source"}]) as run:
        art = store.put("synthetic", name, tensors, meta)
        run.complete(outputs=[io_entry(art, "synthetic")], metrics={"count": int(tensors["labels"].numel())})
    same = art.digest == info["digest"]
    return {"ref": art.ref, "digest": art.digest, "run": run.id, "read": how, "same_digest": same,
            "card_evaluations": len(info.get("evaluations") or []), "source_ref": info.get("ref")}


def _from_pngs(folder: Path, info: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Images and labels from train/metadata.jsonl and its PNGs, normalised with the card's mean/std."""
    import numpy as np
    from PIL import Image

    from ddtool.store.meta import DatasetSignature

    if info.get("zca"):
        raise UsageError(f"{folder} is a ZCA-whitened set without {BLOB}; its PNGs cannot be whitened back here")
    if not (isinstance(info.get("mean"), list) and isinstance(info.get("std"), list)):
        raise UsageError(f"{folder / CARD} does not record the mean and std to normalise the PNGs with")
    listing = folder / SPLIT / "metadata.jsonl"
    if not listing.is_file():
        raise UsageError(f"'{folder}' has neither {BLOB} nor {SPLIT}/metadata.jsonl")
    images, labels = [], []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path = (folder / SPLIT / entry["file_name"]).resolve()
            if not path.is_relative_to((folder / SPLIT).resolve()):
                raise ValueError("file_name leaves the folder")
            with Image.open(path) as img:
                px = np.asarray(img)
            labels.append(int(entry["label"]))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise UsageError(f"{listing}: line {n} cannot be read ({exc})") from None
        images.append(torch.from_numpy(px.copy()).reshape(px.shape[0], px.shape[1], -1).permute(2, 0, 1))
    if not images or len({tuple(x.shape) for x in images}) != 1:
        raise UsageError(f"{listing} lists no images, or images of different shapes")
    x = torch.stack(images).float() / 255
    mean = torch.tensor(info["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(info["std"]).view(1, -1, 1, 1)
    y = torch.tensor(labels)
    sig = DatasetSignature(info.get("dataset"), tuple(info["classes"]) if info.get("classes") else None,
                           info.get("shape"))
    lr = info.get("learned_lr")  # MTT's and DATM's step size: eval.lr = "learned" trains at it
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
        raise UsageError(f"{folder / CARD}: learned_lr is {lr!r}, not a number")
    meta = SyntheticMeta(signature=sig, ipc=int(torch.bincount(y).max()), factor=1, mean=tuple(info["mean"]),
                         std=tuple(info["std"]), method="imported", source_method=info.get("method"),
                         source=folder.name, net=json.dumps(info["net"], sort_keys=True) if info.get("net") else None,
                         parents=(), iterations=0, version=__version__,
                         learned_lr=float(lr) if lr is not None else None).to_metadata()
    if not all(isinstance(v, str) for v in meta.values()):
        raise DDToolError("card fields could not be turned into metadata")
    return {"images": ((x - mean) / std).contiguous(), "labels": y}, {"ddtool.kind": "synthetic", **meta}
