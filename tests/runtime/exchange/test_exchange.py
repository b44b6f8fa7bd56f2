"""Export synthetic sets for other tools and import theirs (ddtool.runtime.exchange.formats): imagefolder,
npz, .pt."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ddtool.store import Store


def _ok(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_npz_round_trip_is_bit_exact_and_evaluable(put_set, cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s", ipc=2)
    _, orig, meta = store.load("synthetic/s")
    # distilled images are arbitrary floats, not only what normalising uint8 pixels gives
    noisy = orig["images"] + 1e-3 * torch.randn(orig["images"].shape, generator=torch.Generator().manual_seed(0))
    store.put("synthetic", "s", {"images": noisy, "labels": orig["labels"]}, {k: v for k, v in meta.items()
                                                                             if k != "ddtool.kind"})
    _, tensors, meta = store.load("synthetic/s")
    out = _ok(cli("store", "export", "synthetic/s", tmp_path / "set", "--format", "npz", "--json"))
    path = Path(out["path"])
    assert path == tmp_path / "set.npz" and out["images"] == [20, 1, 8, 8]
    with np.load(path, allow_pickle=False) as z:
        assert z["images"].dtype == np.float32 and z["labels"].dtype == np.int64
        saved_meta = json.loads(str(z["metadata"][0]))
    assert saved_meta["ddtool.dataset"] == "digits" and saved_meta["ddtool.exported_from"] == "synthetic/s:v2"
    imp = _ok(cli("store", "import", path, "--dataset", "digits", "--name", "back", "--json"))
    assert imp["ref"] == "synthetic/back:v1" and imp["ipc"] == 2 and "already normalised" in imp["detected"]
    art, back, back_meta = store.load("synthetic/back")
    assert torch.equal(back["images"], tensors["images"]) and torch.equal(back["labels"], tensors["labels"])  # exact: float32 through npz and back, no arithmetic
    assert back_meta["ddtool.method"] == "imported" and back_meta["ddtool.source_method"] == "dm"
    assert {k: back_meta[k] for k in ("ddtool.dataset", "ddtool.classes", "ddtool.shape")} == digits.signature()
    record = store.run(imp["run"])
    assert record["command"] == "import" and record["outputs"][0]["digest"] == art.digest
    ev = _ok(cli("-q", "eval", "synthetic/back", "--epochs", "1", "--repeats", "1", "--json"))
    assert 0 <= ev[0]["mean"] <= 1


def test_a_sets_learned_step_size_survives_export_and_import(put_set, cli, store: Store, digits,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    from ddtool.store.meta import SyntheticMeta

    def learned(ref: str) -> float | None:
        return SyntheticMeta.from_metadata(store.blob_metadata(store.resolve(ref).digest)).learned_lr

    put_set(store, digits, "s", ipc=1)
    _, tensors, meta = store.load("synthetic/s")
    store.put("synthetic", "s", tensors, {**{k: v for k, v in meta.items() if k != "ddtool.kind"},
                                         "ddtool.method": "mtt", "ddtool.learned_lr": repr(0.0123)})
    path = Path(_ok(cli("store", "export", "synthetic/s", tmp_path / "s.npz", "--json"))["path"])
    imp = _ok(cli("store", "import", path, "--dataset", "digits", "--name", "back", "--json"))
    assert learned("synthetic/back") == 0.0123  # exact: repr of a float reads back as the same float
    assert any("from the file's metadata" in n for n in imp["notes"])
    ev = _ok(cli("-q", "eval", "synthetic/back", "--epochs", "1", "--repeats", "1", "--lr", "learned", "--json"))
    rec = store.run(ev[0]["run"])
    assert rec["settings"]["lr"] == 0.0123 and rec["metrics"]["lr_from"] == "learned"

    # the reference codes keep it apart from the images: a scalar syn_lr (or lr) entry beside them
    images, logits = torch.randn(10, 1, 8, 8), torch.randn(10, 10)
    torch.save({"image_syn": images, "label_syn": logits, "syn_lr": torch.tensor(0.02)}, tmp_path / "datm.pt")
    imp = _ok(cli("store", "import", tmp_path / "datm.pt", "--dataset", "digits", "--json"))
    assert learned(imp["ref"]) == float(torch.tensor(0.02)) and any("'syn_lr' entry" in n for n in imp["notes"])
    np.savez(tmp_path / "mtt.npz", x=images.numpy(), y=np.arange(10), lr=np.float32(0.05))
    imp = _ok(cli("store", "import", tmp_path / "mtt.npz", "--dataset", "digits", "--json"))
    assert learned(imp["ref"]) == float(np.float32(0.05))
    # --learned-lr wins, and the note says over what
    imp = _ok(cli("store", "import", tmp_path / "mtt.npz", "--dataset", "digits", "--name", "told",
                  "--learned-lr", "0.5", "--json"))
    assert learned("synthetic/told") == 0.5 and any("as told (over 'lr' 0.05)" in n for n in imp["notes"])
    # a file without one records none
    torch.save({"images": images, "labels": torch.arange(10)}, tmp_path / "plain.pt")
    assert learned(_ok(cli("store", "import", tmp_path / "plain.pt", "--dataset", "digits", "--json"))["ref"]) is None
    torch.save({"images": images, "labels": torch.arange(10), "syn_lr": torch.ones(3)}, tmp_path / "vec.pt")
    res = cli("store", "import", tmp_path / "vec.pt", "--dataset", "digits")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "'syn_lr' in" in res.stderr and "not one number" in res.stderr
    # ...unless the step size is given: the message's advice holds
    imp = _ok(cli("store", "import", tmp_path / "vec.pt", "--dataset", "digits", "--name", "vec",
                  "--learned-lr", "0.3", "--json"))
    assert learned("synthetic/vec") == 0.3


def test_store_verify_passes_after_import(cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the import run records its source file's sha256 as an input of kind "file": not a blob
    torch.save({"images": torch.rand(10, 1, 8, 8), "labels": torch.arange(10)}, tmp_path / "a.pt")
    imp = _ok(cli("store", "import", tmp_path / "a.pt", "--dataset", "digits", "--json"))
    assert any(i["kind"] == "file" for i in store.run(imp["run"])["inputs"])
    report = _ok(cli("store", "verify", "--json"))
    assert report["ok"] and report["problems"] == [], report
    gc = _ok(cli("store", "gc", "--dry-run", "--json"))
    assert gc["blobs"] == []


def test_imagefolder_export_writes_decoded_pngs_per_class(put_set, denorm_uint8, cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images = put_set(store, digits, "s", ipc=3)
    folder = tmp_path / "if"
    out = _ok(cli("store", "export", "synthetic/s", folder, "--format", "imagefolder", "--json"))
    assert out["files"] == 30 and out["per_class"] == {str(c): 3 for c in range(10)} and not out["decoded"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([str(c) for c in range(10)] + ["labels.csv"])
    assert all(len(list((folder / str(c)).glob("*.png"))) == 3 for c in range(10))
    with open(folder / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and rows[4] == {"path": "1/0001.png", "label": "1", "class": "1"}
    want = denorm_uint8(images, digits)
    with Image.open(folder / "1" / "0001.png") as im:
        assert im.mode == "L" and im.size == (8, 8)
        assert torch.equal(torch.from_numpy(np.array(im)), want[4, 0])  # exact: the export's own uint8 rounding, recomputed
    # IDC multi-formation: each stored image decodes to 4 training images, and those are exported
    put_set(store, digits, "idc", ipc=1, factor=2)
    out = _ok(cli("store", "export", "synthetic/idc", tmp_path / "idc", "--format", "imagefolder", "--json"))
    assert out["decoded"] and out["files"] == 40 and set(out["per_class"].values()) == {4}
    # a folder with files in it is never written into
    again = cli("store", "export", "synthetic/s", folder, "--format", "imagefolder")
    assert again.exit_code == 2 and "not an empty folder" in again.stderr
    assert "decoded" in cli("store", "export", "--help").stdout


def test_import_pt_formats_and_range_detection(cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    unit = torch.rand(10, 1, 8, 8, generator=g)  # pixels in [0, 1]
    labels = torch.arange(10)
    mean, std = torch.tensor(digits.mean).view(1, -1, 1, 1), torch.tensor(digits.std).view(1, -1, 1, 1)

    torch.save({"images": unit, "labels": labels}, tmp_path / "a.pt")
    out = _ok(cli("store", "import", tmp_path / "a.pt", "--dataset", "digits", "--json"))
    assert out["ref"] == "synthetic/a:v1" and "pixels in [0, 1]" in out["detected"]
    stored = store.load("synthetic/a")[1]["images"]
    assert torch.allclose(stored, (unit - mean) / std)

    # --normalized keeps the values as they are, even inside [0, 1]
    _ok(cli("store", "import", tmp_path / "a.pt", "--dataset", "digits", "--name", "n", "--normalized", "--json"))
    assert torch.equal(store.load("synthetic/n")[1]["images"], unit)  # exact: stored as given

    # values outside [0, 1] are detected as normalised; a tuple works; NHWC is transposed
    normed = torch.randn(10, 8, 8, 1, generator=g)
    torch.save((normed, labels), tmp_path / "b.pt")
    out = _ok(cli("store", "import", tmp_path / "b.pt", "--dataset", "digits", "--json"))
    assert "already normalised (detected" in out["detected"]
    assert torch.equal(store.load("synthetic/b")[1]["images"], normed.permute(0, 3, 1, 2))  # exact: a transpose, no arithmetic

    # DC/DSA/DM's result file, soft labels, uint8 pixels
    soft = torch.nn.functional.one_hot(labels, 10).float()
    # (the reference's own file holds NumPy float64 accuracies: data only, read without unpickling code)
    torch.save({"data": [[unit, soft]], "accs_all_exps": {"ConvNet": [np.float64(0.2528), np.arange(3.0)]}},
               tmp_path / "dc.pt")
    out = _ok(cli("store", "import", tmp_path / "dc.pt", "--dataset", "digits", "--json"))
    assert out["notes"] == ["one-hot label vectors were read as their classes"]
    assert "soft_labels" not in store.load("synthetic/dc")[1]
    assert torch.equal(store.load("synthetic/dc")[1]["labels"], labels)  # exact: integer argmax
    pixels = (unit * 255).round().to(torch.uint8)
    np.savez(tmp_path / "u8.npz", x=pixels.numpy(), y=labels.numpy())
    out = _ok(cli("store", "import", tmp_path / "u8.npz", "--dataset", "digits", "--json"))
    assert "uint8" in out["detected"]
    assert torch.allclose(store.load("synthetic/u8")[1]["images"], digits.normalize(pixels))


def test_import_rejects_bad_files_with_one_line(cli, store: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labels = torch.arange(10)
    torch.save({"images": torch.rand(10, 3, 8, 8), "labels": labels}, tmp_path / "rgb.pt")
    torch.save({"images": torch.rand(10, 1, 8, 8), "labels": labels + 5}, tmp_path / "range.pt")
    torch.save({"pixels": torch.rand(10, 1, 8, 8)}, tmp_path / "keys.pt")
    np.savez(tmp_path / "obj.npz", images=np.array([{"a": 1}], dtype=object), labels=np.arange(1))
    (tmp_path / "x.txt").write_text("hi")
    # NumPy numbers load (reference result files), a NumPy object array does not: it could hold code
    torch.save({"images": torch.rand(10, 1, 8, 8), "labels": labels, "acc": np.array([{"a": 1}], dtype=object)},
               tmp_path / "objarr.pt")
    cases = [("objarr.pt", "weights_only=True"), ("rgb.pt", "needs \\[N, 1, 8, 8\\]"), ("range.pt", "must lie in 0..9"),
             ("keys.pt", "has no images"), ("obj.npz", "allow_pickle=False"), ("x.txt", "use a .npz or .pt"),
             ("missing.npz", "not found")]
    import re

    for name, message in cases:
        res = cli("store", "import", tmp_path / name, "--dataset", "digits")
        assert res.exit_code == 2, (name, res.stdout, res.stderr)
        assert re.search(message, res.stderr) and len(res.stderr.strip().splitlines()) == 1, (name, res.stderr)
    assert store.list() == [] and not [r for r in store.runs() if r["command"] == "import"]
