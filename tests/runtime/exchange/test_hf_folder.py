"""``store export --format hf`` / ``store import DIR`` (ddtool.runtime.exchange.hf_folder): the folder's layout,
its card generated from the store, loading it with the ``datasets`` library, and reading it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddtool.errors import DDToolError, UsageError
from ddtool.runtime.exchange import hf_folder as hf
from ddtool.store import Store

POOL_IO = {"kind": "pool", "role": "pool"}


@pytest.fixture
def shared_set(store: Store, digits, put_set):  # type: ignore[no-untyped-def]
    """synthetic/s of real digits (ipc 2) made by a recorded distill run from pool/p, evaluated twice."""
    pool = store.put("pool", "p", {"m0.w": torch.zeros(1)}, {**digits.signature(), "ddtool.n": "1", "ddtool.seed": "7"})
    put_set(store, digits, "s")
    syn = store.resolve("synthetic/s")
    syn_io = {"ref": syn.ref, "digest": syn.digest, "kind": "synthetic", "role": "synthetic"}
    store.write_run({"id": "20261207-000000-distill-aaaaaa", "command": "distill", "status": "complete",
                     "recipe": {"name": "tiny", "distill": {"method": "dm", "ipc": 2}}, "recipe_sha256": "cd" * 32,
                     "plan": {"iterations": 6}, "wall_seconds": 1.5,
                     "inputs": [{"ref": pool.ref, "digest": pool.digest, **POOL_IO}], "outputs": [syn_io]})
    for i, (mean, std) in enumerate(((0.8125, 0.0125), (0.75, 0.05))):
        store.write_run({"id": f"20261207-00000{i + 1}-eval-bbbbb{i}", "command": "eval", "status": "complete",
                         "settings": {"seed": 3}, "inputs": [syn_io],
                         "metrics": {"accuracies": [mean - std, mean + std], "mean": mean, "std": std,
                                     "net": "convnet", "repeats": 2, "epochs": 8, "protocol": ["dc", "idc"][i]}})
    return syn, pool


def _report_row(digest: str) -> dict:
    return {"ref": "synthetic/s:v1", "digest": digest, "accuracy_mean": 0.8125, "accuracy_std": 0.0125,
            "random_mean": 0.5, "random_std": 0.02, "random_subsets": 3, "ior": 0.3125, "hlr": 0.1,
            "lrs": 55.0, "distill_seconds": 1.5, "storage_bytes": 2560, "protocol": "dc", "net": "convnet",
            "repeats": 2, "full_mean": 0.95, "device": "cpu", "flops": 1e9}


def test_export_writes_images_labels_the_artifact_and_a_card_from_the_store(  # type: ignore[no-untyped-def]
        store: Store, digits, shared_set, tmp_path: Path, denorm_uint8) -> None:
    from PIL import Image

    syn, pool = shared_set
    out = tmp_path / "share"
    info = hf.export_hf(store, "synthetic/s", out, report=[{"digest": "0" * 64}, _report_row(syn.digest)])
    assert (info["files"], info["evaluations"], info["report"]) == (20, 2, True)
    # the images: one PNG per image, listed with its label
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    _, tensors, _ = store.load("synthetic/s")
    assert [r["label"] for r in rows] == tensors["labels"].tolist()
    pixels = denorm_uint8(tensors["images"], digits)
    for i in (0, 7, 19):
        png = torch.from_numpy(__import__("numpy").asarray(Image.open(out / "train" / rows[i]["file_name"])).copy())
        assert torch.equal(png, pixels[i, 0])
    assert not (out / "train" / "labels.csv").exists()
    assert (out / hf.BLOB).read_bytes() == syn.path.read_bytes()  # the artifact, byte for byte
    # the card: the Hub's keys, and ddtool's section generated from the store
    card = hf.read_card(out)
    assert card["configs"][0]["data_files"] == [{"split": "train", "path": "train/**"}]
    names = card["configs"][0]["features"][1]["dtype"]["class_label"]["names"]
    assert list(names.values()) == digits.classes and card["dataset_info"]["features"] == card["configs"][0]["features"]
    assert card["size_categories"] == ["n<1K"] and "dataset-distillation" in card["tags"]
    d = card["ddtool"]
    assert (d["ref"], d["digest"], d["method"], d["ipc"], d["dataset"]) == ("synthetic/s:v1", syn.digest, "dm", 2,
                                                                           "digits")
    assert d["made_from"]["pool"] == [{"ref": "pool/p:v1", "digest": pool.digest, "seed": 7}]
    assert d["made_from"]["recipe"]["name"] == "tiny" and d["made_from"]["recipe"]["iterations"] == 6
    assert d["net"] == {"name": "convnet", "options": {"width": 16}} and d["exported_by"].startswith("ddtool ")
    assert [(e["protocol"], e["net"], e["mean"], e["std"], e["repeats"], e["seeds"]) for e in d["evaluations"]] == [
        ("dc", "convnet", 0.8125, 0.0125, 2, [3, 4]), ("idc", "convnet", 0.75, 0.05, 2, [3, 4])]
    assert d["report"]["random_mean"] == 0.5 and d["report"]["ior"] == 0.3125
    text = (out / "README.md").read_text()
    assert "| dc | convnet | hard | 81.25 ± 1.25 | 2 | 8 |" in text and "IOR 31.25, LRS 55.0" in text
    assert f"pool: `pool/p:v1` (sha256 `{pool.digest}`, seed 7)" in text


def test_the_card_header_is_yaml_the_hub_reads(store: Store, shared_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    yaml = pytest.importorskip("yaml")
    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    text = (tmp_path / "share" / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert header == hf.read_card(tmp_path / "share")


def test_import_reads_a_card_whose_header_was_rewritten_as_block_yaml(store: Store, shared_set,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    syn, _ = shared_set
    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    card = tmp_path / "share" / "README.md"
    lines = card.read_text().splitlines()
    ddtool_line = next(i for i, ln in enumerate(lines) if ln.startswith("ddtool: "))
    lines[ddtool_line:ddtool_line + 1] = ["ddtool:", f"  digest: {syn.digest}", "  ref: synthetic/s:v1"]  # block style
    card.write_text("\n".join(lines))
    assert hf.read_card(tmp_path / "share")["ddtool"] == json.loads((tmp_path / "share" / hf.SECTION_FILE).read_text())
    got = hf.import_hf(Store(tmp_path / "other"), tmp_path / "share")
    assert got["same_digest"] and got["card_evaluations"] == 2
    (tmp_path / "share" / hf.SECTION_FILE).unlink()
    with pytest.raises(UsageError, match="no 'ddtool' section"):
        hf.import_hf(Store(tmp_path / "other"), tmp_path / "share")


def test_the_exported_folder_loads_with_datasets(store: Store, digits, shared_set, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    import numpy as np

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    out = tmp_path / "share"
    hf.export_hf(store, "synthetic/s", out)
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"]
    _, tensors, _ = store.load("synthetic/s")
    assert ds.num_rows == 20 and ds.features["label"].names == digits.classes
    assert ds["label"] == tensors["labels"].tolist()
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    from PIL import Image

    for i in (0, 19):
        assert np.array_equal(np.asarray(ds[i]["image"]), np.asarray(Image.open(out / "train" / rows[i]["file_name"])))


SHARING_PAGE = Path(__file__).resolve().parents[3] / "docs" / "sharing.md"


def test_the_sharing_pages_python_example_loads_an_exported_folder(store: Store, digits, shared_set, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/sharing.md's Python block, read from the page and run as written beside a folder that
    ``store export --format hf share/`` made (the page's own command), offline."""
    datasets = pytest.importorskip("datasets")
    import re

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # not the user's
    (code,) = re.findall(r"^```python\n(.*?)^```", SHARING_PAGE.read_text(encoding="utf-8"), re.S | re.M)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    scope: dict[str, object] = {}
    exec(compile(code, "docs/sharing.md", "exec", dont_inherit=True), scope)  # noqa: S102 - the docs' own code
    assert scope["ds"]["train"].num_rows == 20  # type: ignore[index]
    assert scope["ds"]["train"].features["label"].names == digits.classes  # type: ignore[index]


def test_a_folder_exported_again_with_another_set_loads_the_new_set(store: Store, digits, put_set,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` caches a local folder by its name and its config: two sets exported in turn to one
    folder name must not load the first one's cached rows (they did while every card's config was
    named "default")."""
    datasets = pytest.importorskip("datasets")
    import shutil

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    put_set(store, digits, "one", ipc=1)
    put_set(store, digits, "three", ipc=3)
    rows = []
    for name in ("one", "three"):
        shutil.rmtree("share", ignore_errors=True)
        hf.export_hf(store, f"synthetic/{name}", Path("share"))
        rows.append(datasets.load_dataset("share/", cache_dir=str(tmp_path / "hf-cache"))["train"].num_rows)
    assert rows == [10, 30]


@pytest.fixture
def teacher_export(store: Store, digits, shared_set, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The set exported with soft labels from a one-model pool (a random convnet) at T = 2, and the
    soft targets that network gives the set's images."""
    from ddtool.lookup import build_net
    from ddtool.nets import NetSpec
    from ddtool.pool import Pool
    from ddtool.runtime.evaluate.soft_labels import soft_targets
    from ddtool.store.meta import DatasetSignature

    spec = NetSpec("convnet", {"width": 16})
    torch.manual_seed(0)
    net = build_net(spec, digits.channels, digits.num_classes, digits.resolution).eval()
    pool = Pool(spec, [{k: v.clone() for k, v in net.state_dict().items()}], [{"index": 0}], DatasetSignature.of(digits))
    teacher = store.put("pool", "teacher", *pool.to_artifact())
    out = tmp_path / "share"
    assert hf.export_hf(store, "synthetic/s", out, teacher=teacher.ref, temperature=2.0)["soft_labels"]
    _, tensors, _ = store.load("synthetic/s")
    with torch.no_grad():
        want = soft_targets(net, tensors["images"], 2.0)
    return out, teacher, want


def test_soft_labels_from_a_teacher_go_into_the_metadata(teacher_export) -> None:  # type: ignore[no-untyped-def]
    out, teacher, want = teacher_export
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    got = torch.tensor([r["soft_label"] for r in rows])
    assert got.shape == (20, 10) and torch.allclose(got, want, atol=1e-6)
    card = hf.read_card(out)
    assert card["ddtool"]["soft_labels"]["teacher"] == teacher.ref and card["ddtool"]["soft_labels"]["temperature"] == 2.0
    assert card["configs"][0]["features"][-1]["name"] == "soft_label"
    assert f"teacher `{teacher.ref}`" in (out / "README.md").read_text()


def test_soft_labels_load_with_datasets(teacher_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    datasets = pytest.importorskip("datasets")
    out, _, want = teacher_export
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert torch.allclose(torch.tensor(ds["soft_label"]), want, atol=1e-6)


def test_import_stores_the_same_artifact_and_keeps_the_cards_lineage(store: Store, shared_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    syn, pool = shared_set
    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    other = Store(tmp_path / "other")
    got = hf.import_hf(other, tmp_path / "share")
    assert (got["ref"], got["digest"], got["same_digest"]) == ("synthetic/s:v1", syn.digest, True)
    rec = other.run(got["run"])
    assert rec["command"] == "import" and rec["card"]["made_from"]["pool"][0]["digest"] == pool.digest
    assert [e["mean"] for e in rec["card"]["evaluations"]] == [0.8125, 0.75]
    assert not [r for r in other.runs() if r["command"] == "eval"]  # the card's numbers are not made records here
    assert other.lineage(syn.digest, depth=1)["made_from"]["run"]["command"] == "import"


def test_import_without_the_artifact_reads_the_pngs_back(store: Store, digits, shared_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    shutil.rmtree(tmp_path / "share" / "ddtool")
    other = Store(tmp_path / "other")
    got = hf.import_hf(other, tmp_path / "share", name="from-pngs")
    assert got["ref"] == "synthetic/from-pngs:v1" and not got["same_digest"]
    _, a, _ = store.load("synthetic/s")
    _, b, meta = other.load("synthetic/from-pngs")
    assert torch.equal(a["labels"], b["labels"])
    step = 1 / 255 / min(digits.std)  # one uint8 step in normalised units
    assert (a["images"] - b["images"]).abs().max() <= step / 2 + 1e-6
    assert meta["ddtool.method"] == "imported" and meta["ddtool.source_method"] == "dm"


def test_a_sets_learned_step_size_survives_the_folder_with_or_without_the_artifact(  # type: ignore[no-untyped-def]
        store: Store, digits, put_set, tmp_path: Path) -> None:
    import shutil

    from ddtool.store.meta import SyntheticMeta

    put_set(store, digits, "s")
    _, tensors, meta = store.load("synthetic/s")
    store.put("synthetic", "s", tensors, {**{k: v for k, v in meta.items() if k != "ddtool.kind"},
                                         "ddtool.method": "mtt", "ddtool.learned_lr": repr(0.0123)})
    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    other = Store(tmp_path / "other")

    def learned(got: dict) -> float | None:
        return SyntheticMeta.from_metadata(other.blob_metadata(got["digest"])).learned_lr

    got = hf.import_hf(other, tmp_path / "share", name="from-blob")
    assert got["same_digest"] and learned(got) == 0.0123
    shutil.rmtree(tmp_path / "share" / "ddtool")  # now the PNGs and the card are all there is
    got = hf.import_hf(other, tmp_path / "share", name="from-pngs")
    assert not got["same_digest"] and learned(got) == 0.0123  # exact: the card holds the float as JSON


def test_a_tampered_artifact_in_the_folder_is_refused(store: Store, shared_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    syn, _ = shared_set
    hf.export_hf(store, "synthetic/s", tmp_path / "share")
    blob = tmp_path / "share" / hf.BLOB
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    other = Store(tmp_path / "other")
    with pytest.raises(DDToolError, match=f"blob {syn.digest[:12]} does not match its digest"):
        hf.import_hf(other, tmp_path / "share")
    assert other.list() == []


def test_refusals(store: Store, shared_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UsageError, match="not an empty folder"):
        hf.export_hf(store, "synthetic/s", tmp_path / "full")
    with pytest.raises(UsageError, match="the report has no row for synthetic/s:v1"):
        hf.export_hf(store, "synthetic/s", tmp_path / "new", report=[{"digest": "0" * 64}])
    assert not (tmp_path / "new").exists()
    with pytest.raises(UsageError, match="has no README.md"):
        hf.import_hf(store, tmp_path / "full")
    (tmp_path / "full" / "README.md").write_text("---\npretty_name: x\n---\n")
    with pytest.raises(UsageError, match="no 'ddtool' section"):
        hf.import_hf(store, tmp_path / "full")


def test_a_zca_set_ships_its_whitening_and_un_whitened_pngs(store: Store, digits, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ddtool.data.dataset import data_root
    from ddtool.data.zca import ZCA, find_zca

    x = digits.normalize(digits.train_images[:200])
    zca = ZCA.fit(x, eps=0.1)
    zca.save(Path(data_root()) / "ddtool-cache" / "zca-digits-test.safetensors")  # where 'eval' leaves it
    assert find_zca(zca.digest(), data_root()) is not None
    plain = x[:10]
    whitened = zca.apply(plain)
    meta = {**digits.signature(), "ddtool.zca": zca.digest(), "ddtool.ipc": "1", "ddtool.method": "dm",
            "ddtool.mean": json.dumps(list(digits.mean)), "ddtool.std": json.dumps(list(digits.std))}
    labels = digits.train_labels[:10]
    store.put("synthetic", "z", {"images": whitened, "labels": labels}, meta)
    out = tmp_path / "share"
    assert hf.export_hf(store, "synthetic/z", out)["zca"]
    shipped = ZCA.load(out / hf.ZCA_FILE)
    assert shipped.digest() == zca.digest() == hf.read_card(out)["ddtool"]["zca"]
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    import numpy as np
    from PIL import Image

    png = torch.from_numpy(np.asarray(Image.open(out / "train" / rows[0]["file_name"])).copy()).float() / 255
    pixels = (plain[0, 0] * digits.std[0] + digits.mean[0]).clamp(0, 1)  # the un-whitened image, not the whitened one
    assert (png - pixels).abs().max() < 2 / 255
    assert "ZCA-whitened" in (out / "README.md").read_text()
