"""A synthetic set that carries its own label vectors (issue 25: DATM's learned soft labels, or an
imported set's): stored beside the images, read back, trained on by ``eval`` (``labels = "auto"``
picks them), written by ``store export`` and read by ``store import``, shown by ``inspect``; a set
stored before sets carried label vectors reads back as before."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from ddtool.errors import DDToolError
from ddtool.nets import NetSpec
from ddtool.store import Store
from ddtool.store.meta import DatasetSignature, SyntheticMeta
from ddtool.synthetic import SyntheticSet

FAST = ["--epochs", "30", "--repeats", "1", "--batch", "32", "--protocol", "dsa", "--device", "cpu", "--json",
        "--set", "eval.impl=\"loop\"", "--set", "eval.compile=false"]


def labelled_set(store: Store, digits, soft: torch.Tensor | None, kind: str | None = "logits",  # type: ignore[no-untyped-def]
                 name: str = "s", ipc: int = 10, factor: int = 1) -> SyntheticSet:
    """Real digits (ipc per class) stored as a set, with ``soft`` as its label vectors."""
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([digits.sample_class(c, ipc, generator=g) for c in range(10)])
    labels = torch.arange(10).repeat_interleave(ipc)
    info = SyntheticMeta(signature=DatasetSignature.of(digits), method="datm", mean=digits.mean, std=digits.std,
                         net=NetSpec("convnet", {"width": 16}).to_json(), parents=(),
                         label_kind=kind if soft is not None else None)
    syn = SyntheticSet(digits.normalize(digits.train_images[idx]), labels, ipc, factor, info, soft_labels=soft)
    store.put("synthetic", name, *syn.to_artifact())
    return syn


def shifted_logits(ipc: int = 10, shift: int = 1, scale: float = 8.0) -> torch.Tensor:
    """Logits that name class (c + shift) % 10 for every image of class c."""
    wrong = (torch.arange(10).repeat_interleave(ipc) + shift) % 10
    return scale * torch.nn.functional.one_hot(wrong, 10).float()


def test_label_vectors_round_trip_through_the_store_and_an_old_set_reads_without(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.evaluate.train_eval import load_synthetic

    soft = torch.randn(100, 10)
    labelled_set(store, digits, soft, "logits", name="learned")
    labelled_set(store, digits, None, name="hard")
    _, back = load_synthetic(store, "synthetic/learned")
    assert back.info.label_kind == "logits" and torch.equal(back.soft_labels, soft)
    _, old = load_synthetic(store, "synthetic/hard")
    assert old.soft_labels is None and old.info.label_kind is None and old.decoded_targets() is None
    assert "soft_labels" not in store.read_blob(store.resolve("synthetic/hard").digest)[0]


def test_label_vectors_must_say_what_they_are_and_fit_the_set() -> None:
    images, labels = torch.zeros(4, 1, 8, 8), torch.tensor([0, 0, 1, 1])
    with pytest.raises(DDToolError, match="label_kind"):
        SyntheticSet(images, labels, 2, soft_labels=torch.zeros(4, 2))
    with pytest.raises(DDToolError, match=r"float \[4, classes\]"):
        SyntheticSet(images, labels, 2, info=SyntheticMeta(label_kind="logits"), soft_labels=torch.zeros(3, 2))


def test_decoded_targets_are_probabilities_shared_by_a_stored_images_tiles() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    syn = SyntheticSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), 1, factor=2,
                       info=SyntheticMeta(label_kind="logits"), soft_labels=logits)
    targets = syn.decoded_targets()
    assert targets.shape == (8, 2) and torch.allclose(targets.sum(1), torch.ones(8))
    assert torch.allclose(targets[:4], torch.softmax(logits[0], 0).expand(4, 2))
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    same = SyntheticSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), 1, info=SyntheticMeta(label_kind="probabilities"),
                        soft_labels=probs)
    assert torch.equal(same.decoded_targets(), probs)  # probabilities are trained on as they are


def test_eval_auto_trains_on_a_sets_learned_labels_and_hard_overrides(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    """Labels that name the next class for every image: trained on (auto), the networks learn the
    shift and score far below the same images trained on with their classes (--labels hard)."""
    labelled_set(store, digits, shifted_logits())
    auto = cli("eval", "synthetic/s", *FAST)
    hard = cli("eval", "synthetic/s", *FAST, "--labels", "hard")
    assert auto.exit_code == 0 and hard.exit_code == 0, auto.stderr + hard.stderr
    a, h = json.loads(auto.stdout)[0], json.loads(hard.stdout)[0]
    assert h["mean"] > 0.6 and a["mean"] < 0.25, (a["mean"], h["mean"])
    assert a["soft"] == {"labels": "learned", "label_kind": "logits", "soft_label_bytes": 100 * 10 * 4,
                         "soft_label_dtype": "float32"} and "soft" not in h
    runs = {r["id"]: r for r in store.runs() if r["command"] == "eval"}
    assert runs[a["run"]]["settings"]["labels"] == "learned" and runs[a["run"]]["metrics"]["labels"] == "learned"
    assert runs[h["run"]]["settings"]["labels"] == "hard" and "labels" not in runs[h["run"]]["metrics"]
    # the report reads hard-label accuracies back from the store: never the learned-label one
    from ddtool.recipe import EvalSection
    from ddtool.runtime.report.stored_accuracies import of_set, same_settings

    cfg = EvalSection(epochs=30, batch=32, protocol="dsa")
    spec = NetSpec("convnet", {"width": 16})
    hard_of_set = of_set(store.resolve("synthetic/s").digest)
    assert same_settings(runs[h["run"]], spec, cfg) and hard_of_set(runs[h["run"]])
    assert not hard_of_set(runs[a["run"]])


def test_learned_labels_on_a_set_without_them_is_one_usage_line(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    labelled_set(store, digits, None)
    res = cli("eval", "synthetic/s", *FAST, "--labels", "learned")
    assert res.exit_code == 2 and "carries no label vectors" in res.stderr and "--labels hard" in res.stderr
    assert not [r for r in store.runs() if r["command"] == "eval"]  # refused before a record


def test_npz_export_and_import_keep_the_label_vectors(cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    soft = torch.randn(100, 10)
    labelled_set(store, digits, soft)
    out = cli("store", "export", "synthetic/s", str(tmp_path / "s.npz"), "--format", "npz", "--json")
    assert out.exit_code == 0, out.stderr
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert np.array_equal(z["soft_labels"], soft.numpy())
        assert json.loads(str(z["metadata"][0]))["ddtool.label_kind"] == "logits"
    res = cli("store", "import", str(tmp_path / "s.npz"), "--dataset", "digits", "--name", "back", "--json")
    assert res.exit_code == 0, res.stderr
    from ddtool.runtime.evaluate.train_eval import load_synthetic

    _, back = load_synthetic(store, "synthetic/back")
    assert back.info.label_kind == "logits" and torch.equal(back.soft_labels, soft)


def test_a_datm_style_pt_file_imports_its_logits_as_labels_and_detects_probabilities(store: Store, digits,  # type: ignore[no-untyped-def]
                                                                                     tmp_path: Path) -> None:
    from ddtool.runtime.evaluate.train_eval import load_synthetic
    from ddtool.runtime.exchange.formats import import_set

    images = digits.train_images[:20].float() / 255
    logits = torch.randn(20, 10)
    torch.save({"image_syn": images, "label_syn": logits}, tmp_path / "datm.pt")
    res = import_set(store, tmp_path / "datm.pt", digits, name="datm")
    _, syn = load_synthetic(store, res.artifact.ref)
    assert syn.info.label_kind == "logits" and torch.equal(syn.soft_labels, logits)
    assert torch.equal(syn.labels, logits.argmax(1)) and any("logits, detected" in n for n in res.notes)
    probs = torch.softmax(logits, 1)
    torch.save({"images": images, "labels": probs}, tmp_path / "probs.pt")
    _, syn = load_synthetic(store, import_set(store, tmp_path / "probs.pt", digits, name="p").artifact.ref)
    assert syn.info.label_kind == "probabilities" and torch.allclose(syn.soft_labels, probs)
    torch.save({"images": images, "labels": torch.randn(20, 3)}, tmp_path / "bad.pt")
    with pytest.raises(DDToolError, match=r"need \[20, 10\]"):
        import_set(store, tmp_path / "bad.pt", digits, name="bad")


def test_imagefolder_and_hf_exports_write_each_images_probabilities(cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    soft = shifted_logits(ipc=2)
    labelled_set(store, digits, soft, ipc=2)
    res = cli("store", "export", "synthetic/s", str(tmp_path / "folder"), "--format", "imagefolder", "--json")
    assert res.exit_code == 0, res.stderr
    with open(tmp_path / "folder" / "soft_labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 and (tmp_path / "folder" / rows[0]["path"]).is_file()
    probs = torch.tensor([[float(r[f"p_{c}"]) for c in range(10)] for r in rows])
    assert torch.allclose(probs, torch.softmax(soft, 1), atol=1e-6)
    res = cli("store", "export", "synthetic/s", str(tmp_path / "hf"), "--format", "hf", "--json")
    assert res.exit_code == 0, res.stderr
    entries = [json.loads(line) for line in (tmp_path / "hf" / "train" / "metadata.jsonl").read_text().splitlines()]
    assert torch.allclose(torch.tensor([e["soft_label"] for e in entries]), torch.softmax(soft, 1), atol=1e-6)
    assert "the set's own learned labels (stored as logits)" in (tmp_path / "hf" / "README.md").read_text()


def test_inspect_shows_each_images_top_label_and_confidence(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    soft = shifted_logits(ipc=2)
    soft[0] = torch.zeros(10)  # one image with uniform labels: its own class first (argmax), 0.1
    labelled_set(store, digits, soft, ipc=2)
    res = cli("inspect", "synthetic/s", "--json")
    assert res.exit_code == 0, res.stderr
    tops = json.loads(res.stdout)["top_labels"]
    assert len(tops) == 20 and tops[0]["confidence"] == pytest.approx(0.1)
    assert [t["top"] for t in tops[1:]] == [(t["label"] + 1) % 10 for t in tops[1:]]
    text = cli("inspect", "synthetic/s", "--color", "none")
    assert text.exit_code == 0, text.stderr
    assert "learned labels (logits)" in text.stdout and "19 of 20 images have another top class" in text.stdout
