"""``ddtool store show --tree``: the lineage tree of an artifact."""

from __future__ import annotations

import json

import torch

from ddtool.store import Store


def test_store_show_tree_lists_sources_and_products(put_set, cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    pool = store.put("pool", "p", {"m0.w": torch.zeros(1)}, {**digits.signature(), "ddtool.n": "1"})
    put_set(store, digits, "s")
    syn = store.resolve("synthetic/s")
    base = {"inputs": [], "outputs": [], "metrics": {}, "status": "complete", "wall_seconds": 1.0,
            "plugins": {"ddtool.methods.builtin": "ddtool 0.1.0 (built-in)", "pixelmmd": "ddtool-pixelmmd 0.1.0"}}
    pool_io = {"ref": pool.ref, "digest": pool.digest, "kind": "pool", "role": "pool"}
    syn_io = {"ref": syn.ref, "digest": syn.digest, "kind": "synthetic", "role": "synthetic"}
    store.write_run({**base, "id": "20260101-000000-pretrain-aaaaaa", "command": "pretrain",
                     "recipe": {"name": "r"}, "recipe_sha256": "ab" * 32, "outputs": [pool_io]})
    store.write_run({**base, "id": "20260101-000001-distill-bbbbbb", "command": "distill",
                     "recipe": {"name": "r", "distill": {"method": "dm", "ipc": 2}}, "recipe_sha256": "cd" * 32,
                     "plan": {"iterations": 6}, "inputs": [pool_io], "outputs": [syn_io]})
    store.write_run({**base, "id": "20260101-000002-eval-cccccc", "command": "eval", "inputs": [syn_io],
                     "metrics": {"mean": 0.85, "std": 0.01, "net": "convnet", "repeats": 5, "epochs": 300}})
    res = cli("store", "show", "synthetic/s", "--tree")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    for piece in ("made from", "dataset digits (10 classes, 1x8x8)", "pool pool/p:v1", "recipe r sha256 cdcdcdcdcdcd",
                  "method dm, ipc 2, iterations 6", "plugins ddtool 0.1.0 (built-in), ddtool-pixelmmd 0.1.0",
                  "made into", "eval run 20260101-000002-eval-cccccc 85.00 ± 1.00 % on convnet",
                  "recipe r sha256 abababababab"):  # the pool's own recipe, one level down
        assert piece in out, (piece, out)
    info = json.loads(cli("store", "show", "synthetic/s", "--tree", "--json").stdout)
    assert info["made_from"]["pool"][0]["digest"] == pool.digest
    assert info["made_into"][0]["metrics"]["mean"] == 0.85
    # from the pool: the distill run, the set it made, and that set's eval
    pool_tree = cli("store", "show", "pool/p", "--tree").stdout
    assert "distill run 20260101-000001-distill-bbbbbb" in pool_tree and "synthetic/s:v1" in pool_tree
    assert "85.00 ± 1.00 %" in pool_tree
    plain = json.loads(cli("store", "show", "synthetic/s", "--json").stdout)  # the old view stays
    assert plain["used_by"][0]["run"] == "20260101-000002-eval-cccccc"


def test_store_show_tree_of_an_mtt_set_names_its_trajectories(put_set, cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.nets import NetSpec
    from ddtool.store.meta import DatasetSignature
    from ddtool.trajectories import Trajectories, expert_artifact

    sig = DatasetSignature.of(digits)
    spec = NetSpec("convnet", {"width": 8})
    expert = store.put_blob(*expert_artifact(torch.zeros(3, 15), sig, spec, seed=0))
    traj = Trajectories(spec, [("w", (15,))], 2, [expert], {"lr": 0.01}, torch.rand(1, 3), torch.rand(1, 2), sig,
                        recipe_sha256="ef" * 32, seed=0)
    t_art = store.put("trajectories", "experts", *traj.to_artifact())
    put_set(store, digits, "m")
    syn = store.resolve("synthetic/m")
    base = {"outputs": [], "metrics": {}, "status": "complete", "wall_seconds": 1.0, "plugins": {}}
    t_io = {"ref": t_art.ref, "digest": t_art.digest, "kind": "trajectories", "role": "trajectories"}
    store.write_run({**base, "id": "20260101-000000-pretrain-aaaaaa", "command": "pretrain", "inputs": [],
                     "recipe": {"name": "experts"}, "recipe_sha256": "ef" * 32, "outputs": [t_io]})
    store.write_run({**base, "id": "20260101-000001-distill-bbbbbb", "command": "distill", "inputs": [t_io],
                     "recipe": {"name": "m", "distill": {"method": "mtt", "ipc": 2}}, "recipe_sha256": "cd" * 32,
                     "outputs": [{"ref": syn.ref, "digest": syn.digest, "kind": "synthetic", "role": "synthetic"}]})
    out = cli("store", "show", "synthetic/m", "--tree").stdout
    assert f"trajectories trajectories/experts:v1 {t_art.digest[:12]}" in out, out
    assert "run 20260101-000000-pretrain-aaaaaa (pretrain" in out  # what made the trajectories, one level down
    info = json.loads(cli("store", "show", "synthetic/m", "--tree", "--json").stdout)
    assert [p["ref"] for p in info["made_from"]["trajectories"]] == ["trajectories/experts:v1"]
    assert info["made_from"]["pool"] == []
    listed = next(ln for ln in cli("store", "ls", env={"COLUMNS": "200"}).stdout.splitlines()
                  if ln.startswith("trajectories/experts:v1"))
    assert "1 expert " in listed  # experts, not 'models'


def test_store_ls_at_80_columns_shows_every_ref_whole(put_set, cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    store.put("pool", "digits-convnet-with-a-long-name", {"m0.w": torch.zeros(1)}, {**digits.signature(), "ddtool.n": "1"})
    put_set(store, digits, "digits-dm-ipc10-a-name-someone-typed-out-in-full")
    put_set(store, digits, "s")
    refs = [r["ref"] for r in json.loads(cli("store", "ls", "--json").stdout)]
    assert max(map(len, refs)) > 50  # the old table cut such refs at 80 columns: 'synthetic/d…'
    res = cli("store", "ls", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    for ref in refs:  # one line each, whole
        assert any(ln.split()[:1] == [ref] for ln in lines), (ref, res.stdout)
    assert "…" not in res.stdout and "digest" in next(ln for ln in lines if ln.startswith("ref"))
    wide = cli("store", "ls", env={"COLUMNS": "200"}).stdout.splitlines()
    assert next(ln for ln in wide if ln.startswith("ref")).split() == [
        "ref", "kind", "digest", "dataset", "method/ipc", "size"]
    row = next(ln for ln in wide if ln.startswith("synthetic/s:v1"))
    assert row.split()[1:4] == ["synthetic", store.resolve("synthetic/s").digest[:12], "digits"]


def test_store_ls_tells_a_method_on_a_perturbed_pool_from_the_method_alone(put_set, cli, store: Store,  # type: ignore[no-untyped-def]
                                                                           digits) -> None:
    """Acc-DD's Ours is IDC on a pool with a perturbation: listed (and reported) as such, not as 'idc' (issue 23)."""
    put_set(store, digits, "plain")
    tensors, meta = store.read_blob(store.resolve("synthetic/plain").digest)
    store.put("synthetic", "ours", tensors, {**meta, "ddtool.selection": "random", "ddtool.schedule": "gaussian"})
    store.put("synthetic", "scratch", tensors, {**meta, "ddtool.selection": "scratch", "ddtool.schedule": "none"})
    lines = {ln.split()[0]: ln for ln in cli("store", "ls", env={"COLUMNS": "200"}).stdout.splitlines()
             if ln.startswith("synthetic/")}
    assert "dm + random + gaussian ipc=2" in lines["synthetic/ours:v1"]
    assert "dm ipc=2" in lines["synthetic/plain:v1"] and "dm ipc=2" in lines["synthetic/scratch:v1"]
    rows = {r["ref"]: r for r in json.loads(cli("store", "ls", "--json").stdout)}
    assert rows["synthetic/ours:v1"]["method"] == "dm"  # the JSON keeps the method apart from the label
    assert rows["synthetic/ours:v1"]["label"] == "dm + random + gaussian"
