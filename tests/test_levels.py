"""Levels that differ in time: the manifest's levels, every level's graph, the level gate's
scores in the controller graph, the run-time budget, and the fit (docs/TIME.md)."""
import json

import numpy as np
import pytest
import torch

from granular_mobile.errors import ConfigError, DataError
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.backends import open_export
from granular_mobile.runtime.backends.torch import TorchBackend
from granular_mobile.runtime.budget import allocate
from granular_mobile.runtime.manifest import Manifest
from test_routing import check_routing, mixed_image

BACKENDS = ["onnxruntime", "tflite"]


# -- the allocation ---------------------------------------------------------------------------
def test_allocation_fits_the_budget_and_spends_it_where_predicted():
    rng = np.random.default_rng(0)
    costs = (0.4, 0.6, 1.0)
    scores = np.cumsum(rng.random((50, 3)), axis=1) * [0, 1, 1]  # gains over the cheapest, increasing
    prev = None
    for budget in np.linspace(0.4, 1.0, 13):
        ch = allocate(scores, costs, budget)
        assert np.asarray(costs)[ch].mean() <= budget + 1e-9
        if prev is not None:  # the knob is monotone: more budget, no tile gets a cheaper level
            assert (np.asarray(costs)[ch] >= np.asarray(costs)[prev]).all()
        prev = ch
    assert (allocate(scores, costs, 0.4) == 0).all()
    assert (allocate(scores, costs, 1.0) == 2).all()
    # where predicted gains differ, the budget goes to the tiles that gain most
    two = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 1.0]])
    assert allocate(two, costs, 0.7).tolist() == [2, 0]
    with pytest.raises(ConfigError, match=r"``budget`` 0.3 is below the cheapest level's cost 0.4"):
        allocate(scores, costs, 0.3)


def test_the_allocation_the_browser_and_android_tests_hold():
    """web_demo/test/routing.test.mjs and the Java CoreTest hold these choices for these scores:
    a change to the Python allocation that changes them fails here too."""
    s = [[0.0, 0.322, 1.124], [0.0, 0.676, 1.109], [0.0, 0.639, 1.373], [0.0, 0.505, 1.022], [0.0, 1.017, 1.755],
         [0.0, 1.24, 1.889], [0.0, 0.989, 0.99], [0.0, 1.272, 1.586], [0.0, 1.477, 1.948], [0.0, 0.804, 1.511],
         [0.0, 0.465, 1.126], [0.0, 1.139, 1.769]]
    want = {0.55: [0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1], 0.7: [2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1],
            0.85: [2, 1, 2, 1, 2, 2, 1, 1, 1, 2, 2, 2]}
    for b, w in want.items():
        assert allocate(np.array(s), (0.4, 0.6, 1.0), b).tolist() == w, b


def test_a_small_image_spends_its_budget():
    """With 2 tiles, the Lagrangian's one switching point would leave half the budget unspent."""
    ch = allocate(np.array([[0.0, 1.0], [0.0, 1.0]]), (0.5, 1.0), 0.75)
    assert sorted(ch.tolist()) == [0, 1]


# -- the export -------------------------------------------------------------------------------
def test_the_manifest_carries_every_level_and_the_gate(tiny_timed_export):
    exp, m = tiny_timed_export
    man = Manifest.from_json((exp / "manifest.json").read_text())
    assert [lv.name for lv in man.levels] == ["a4", "a5", "a6", "a8", "a6k1"]
    k1 = man.levels[-1]
    assert (k1.bits, k1.blocks) == (6, 1) and 0 < k1.macs < man.levels[0].macs
    assert k1.cost == 0.6 and man.levels[0].cost == 1.0  # the gate's measured costs; MACs for the others
    assert man.level_gate is not None and man.level_gate.choices == ("a6k1", "a6", "a8")
    for t in ("onnx", "tflite"):
        files = man.targets[t].level_files()
        assert set(files) == {lv.name for lv in man.levels} and all((exp / f).is_file() for f in files.values())
        assert man.targets[t].sr == {b: files[f"a{b}"] for b in (4, 5, 6, 8)}  # readers before levels
    # an export before levels: its bit levels, read as levels
    d = json.loads((exp / "manifest.json").read_text())
    for k in ("levels", "level_gate"):
        d.pop(k)
    for t in d["targets"].values():
        t.pop("levels")
    old = Manifest.from_dict(d)
    assert [lv.name for lv in old.level_list()] == ["a4", "a5", "a6", "a8"] and old.level_gate is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_level_graph_is_the_model_at_that_level(tiny_timed_export, backend):
    from granular_mobile.data.calibration import calibration_tiles

    exp, m = tiny_timed_export
    be = open_export("onnx" if backend == "onnxruntime" else "tflite", exp)
    ref = TorchBackend.from_models(m, tile=32, numerics="int8")
    x = calibration_tiles(32)[:4].numpy()
    for lv in ref.levels:
        got = np.concatenate([be.sr(x[i:i + 1], lv) for i in range(len(x))])
        want = ref.sr(x, lv)
        with torch.no_grad():
            assert np.array_equal(want, m(torch.from_numpy(x), m.cfg.level_by_name(lv)).numpy())
        if backend == "onnxruntime":
            assert np.array_equal(got, want), lv  # bit-exact
        else:
            mse = float(((np.clip(got, 0, 1) - np.clip(want, 0, 1)) ** 2).mean())
            assert 10 * np.log10(1 / max(mse, 1e-12)) > 45, lv
    # the exit level computes something else than its full-depth twin
    assert not np.array_equal(be.sr(x[:1], "a6k1"), be.sr(x[:1], "a6"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_controller_graph_scores_as_the_model(tiny_timed_export, backend):
    from granular_mobile.data.calibration import calibration_tiles

    exp, m = tiny_timed_export
    be = open_export("onnx" if backend == "onnxruntime" else "tflite", exp)
    x = calibration_tiles(32)[:6]
    with torch.no_grad():
        want = m.level_scores(x).numpy()
    got = np.concatenate([be.scores(x[i:i + 1].numpy()) for i in range(len(x))])
    assert got.shape == (6, 3) and np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


# -- the runtime ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_tile_runs_its_budgeted_level(tiny_timed_export, backend):
    exp, _ = tiny_timed_export
    up = Upscaler(Upscaler.load(str(exp), backend=backend).backend, overlap=8, merge="center", budget=0.8)
    img = mixed_image()
    sr, rep = up(img)
    assert len(set(rep.tile_levels)) >= 2, f"one level only ({rep.tile_levels}): the test proves no routing"
    assert rep.budget == 0.8 and rep.cost is not None and rep.cost <= 0.8 + 1e-9
    assert sum(rep.tiles_per_level.values()) == rep.tiles and set(rep.sr_s_per_level) == set(rep.tiles_per_level)
    check_routing(up, img, sr, rep)


def test_verify_compares_every_level_and_the_gates_allocation(tiny_timed_export, verify_root, tmp_path):
    """`gdq export --verify` on a gated export: every level's graph (exits by name) and the
    level each tile gets from the exported scores at the gate's budget; a wrong gate fails it."""
    import shutil

    from granular_mobile.export.exporter import parity_ok
    from granular_mobile.verify.parity import verify_export

    exp, m = tiny_timed_export
    out = tmp_path / "exp"
    shutil.copytree(exp, out)
    man = Manifest.from_json((out / "manifest.json").read_text())
    res = verify_export(out, man, m, None, verify_root, max_tiles=24)
    for t in ("onnx", "tflite"):
        assert set(res[t]["sr"]) == {"4", "5", "6", "8", "a6k1"}, res[t]["sr"]
        assert res[t]["gate_agreement"] == 1.0 and res[t]["gate_scores_max_abs_diff"] < 1e-3, res[t]
    assert all(v["psnr_db"] == 999 for v in res["onnx"]["sr"].values()), res["onnx"]["sr"]
    assert parity_ok(res)
    wrong = type(m)(m.cfg).eval()  # the same model with the gate's preferences reversed
    wrong.load_state_dict(m.state_dict())
    with torch.no_grad():
        wrong.level_gate.weight.neg_()
        wrong.level_gate.bias.neg_()
    bad = verify_export(out, man, wrong, None, verify_root, max_tiles=24)
    assert bad["onnx"]["gate_agreement"] < 0.9 and not parity_ok(bad)


def test_verify_of_a_float_fp_layers_export_compares_with_its_programs(tiny_timed_export, verify_root, tmp_path):
    """With --fp-layers float the graphs are not the int8 model's forward: --verify's reference
    must be the exported programs (the same rounding points), so ONNX still reads identical."""
    from granular_mobile.export import export

    _, m = tiny_timed_export
    man = export(m, ["onnx"], tmp_path / "exp", tile=32, fp_layers="float", verify=True, verify_root=verify_root)
    sr = man.parity["onnx"]["sr"]
    assert set(sr) >= {"4", "8", "a6k1"}
    assert all(v["psnr_db"] >= 80 for v in sr.values()), sr
    assert any(v["psnr_vs_float_db"] < v["psnr_db"] for v in sr.values()), sr  # the forward differs


def test_the_budget_knob_is_monotone_and_the_default_is_the_models(tiny_timed_export):
    exp, m = tiny_timed_export
    be = Upscaler.load(str(exp), backend="onnxruntime").backend
    img = mixed_image()
    assert Upscaler(be).budget == m.cfg.level_gate.budget
    costs, prev = [], None
    for budget in (0.6, 0.7, 0.8, 0.9, 1.1):
        _, rep = Upscaler(be, overlap=8, budget=budget)(img)
        costs.append(rep.cost)
        lv = np.array([m.cfg.level_gate.choices.index(x) for x in rep.tile_levels])
        if prev is not None:  # choices are cheapest first: a higher index is a dearer level
            assert (lv >= prev).all()
        prev = lv
    assert costs == sorted(costs) and costs[0] == 0.6 and costs[-1] > costs[0]
    # the torch backend allocates the same (its scores are the graph's, to float rounding)
    _, rt = Upscaler(TorchBackend.from_models(m, tile=32, numerics="int8"), overlap=8, budget=0.8)(img)
    _, ro = Upscaler(be, overlap=8, budget=0.8)(img)
    assert rt.tile_levels == ro.tile_levels


def test_budget_errors_are_one_line(tiny_timed_export, tiny_export):
    exp, _ = tiny_timed_export
    be = Upscaler.load(str(exp), backend="onnxruntime").backend
    with pytest.raises(ConfigError, match="below the cheapest level's cost 0.6"):
        Upscaler(be, budget=0.5)
    with pytest.raises(ConfigError, match="drop ``bits``"):
        Upscaler(be, bits=6, budget=0.8)
    with pytest.raises(ConfigError, match=r"valid: auto, 4, 5, 6, 8, a6k1"):
        Upscaler(be, bits="a6k9")
    plain = Upscaler.load(str(tiny_export[0]), backend="onnxruntime").backend
    with pytest.raises(ConfigError, match="``budget`` needs a model with a level gate"):
        Upscaler(plain, budget=0.8)


def test_a_forced_level_runs_that_graph_on_every_tile(tiny_timed_export):
    exp, _ = tiny_timed_export
    up = Upscaler(Upscaler.load(str(exp), backend="onnxruntime").backend, bits="a6k1", overlap=8)
    sr, rep = up(mixed_image())
    assert rep.tiles_per_level == {"a6k1": rep.tiles} and rep.fab == 6.0
    check_routing(up, mixed_image(), sr, rep)


# -- the fit ----------------------------------------------------------------------------------
def test_the_fit_recovers_gains_that_follow_the_features(tiny_timed_export):
    """Gains that are a linear function of the gate's features: the fitted gate predicts them
    (the scores' order is the gains'), and its cross-validated allocation is the oracle's."""
    import dataclasses

    from granular_mobile.config import TileConfig
    from granular_mobile.models import build_from_config
    from granular_mobile.train.gate_fit import fingerprint
    from granular_mobile.train.level_gate import LevelGains, fit_level_gate, image_gains

    _, m = tiny_timed_export
    base = build_from_config(dataclasses.replace(m.cfg, level_gate=None))
    base.load_state_dict(m.state_dict(), strict=False)
    rng = np.random.default_rng(0)
    n, f = 240, 3 * m.cfg.n_feats + 1
    feat = rng.normal(size=(n, f)).astype(np.float32)
    g1 = 20 + 8 * feat[:, 0]
    g2 = g1 + 10 + 5 * feat[:, 1]
    se0 = 400 + rng.random(n)
    se = np.stack([se0, se0 - g1, se0 - g2], 1)
    gains = LevelGains(feat, np.repeat(np.arange(12), 20), se, np.full(12, 20 * 1024.0), ("a6k1", "a6", "a8"),
                       TileConfig(32, 24), fingerprint(base))
    new, rep = fit_level_gate(base, gains, (0.6, 1.0, 1.1), 0.8, ridge=1.0)
    assert new.cfg.level_gate.choices == ("a6k1", "a6", "a8") and new.cfg.level_gate.budget == 0.8
    with torch.no_grad():
        pred = new.level_gate(torch.from_numpy(feat)).numpy()
    y = image_gains(gains)
    for k in (1, 2):
        assert np.corrcoef(pred[:, k], y[:, k])[0, 1] > 0.98
    for r in rep["cv"]:
        assert r["cost"] <= r["budget"] + 1e-9
        assert r["psnr"] >= r["oracle_psnr"] - 0.01, r
        assert r["oracle_psnr"] >= r["static_mix_psnr"] - 1e-6
    fit_level_gate(m, gains, (0.6, 1.0, 1.1), 0.8)  # a gated model refits from its network's measurements
    two, _ = fit_level_gate(m, gains.subset(("a6k1", "a8")), (0.6, 1.1), 0.8)  # and with other choices
    assert two.cfg.level_gate.choices == ("a6k1", "a8") and two.level_gate.weight.shape[0] == 2
    with torch.no_grad():
        base.tail[1].weight.add_(0.01)
    with pytest.raises(DataError, match="another network"):
        fit_level_gate(base, gains, (0.6, 1.0, 1.1), 0.8)


def test_fit_gate_levels_then_run_with_a_budget(tiny_timed_export, tiny_data, tmp_path):
    """The command line end to end: fit a level gate on training images, export, run at a budget."""
    import dataclasses

    import cv2
    from typer.testing import CliRunner

    from granular_mobile.checkpoint import load_model, save_model
    from granular_mobile.cli import app
    from granular_mobile.models import build_from_config

    _, m = tiny_timed_export
    base = build_from_config(dataclasses.replace(m.cfg, level_gate=None))
    base.load_state_dict(m.state_dict(), strict=False)
    save_model(base, tmp_path / "exits.pt")
    run = CliRunner().invoke
    r = run(app, ["fit-gate", str(tmp_path / "exits.pt"), "--levels", "a6k1,a6", "--images", "6", "--data", str(tiny_data),
                  "--tile", "32", "--step", "24", "--budget", "0.9", "--json", str(tmp_path / "fit.json"),
                  "-o", str(tmp_path / "timed.pt")])
    assert r.exit_code == 0, r.output
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["choices"] == ["a6k1", "a6"] and fit["cost_source"] == "macs" and fit["images"] == 6
    assert fit["costs"][0] < fit["costs"][1] == 1.0 and any(r["budget"] == 0.9 for r in fit["cv"])
    g = load_model(str(tmp_path / "timed.pt")).cfg.level_gate
    assert g is not None and g.budget == 0.9 and g.choices == ("a6k1", "a6")
    r = run(app, ["export", "-m", str(tmp_path / "timed.pt"), "-o", str(tmp_path / "exp"), "--tile", "32"])
    assert r.exit_code == 0, r.output
    cv2.imwrite(str(tmp_path / "in.png"), mixed_image()[:, :, ::-1])
    for budget in ("0.9", "1.0"):
        r = run(app, ["run", str(tmp_path / "in.png"), "-o", str(tmp_path / f"o{budget}.png"), "-m", str(tmp_path / "exp"),
                      "--budget", budget, "--stats", str(tmp_path / f"s{budget}.json")])
        assert r.exit_code == 0, r.output
    s9, s10 = (json.loads((tmp_path / f"s{b}.json").read_text()) for b in ("0.9", "1.0"))
    assert s9["budget"] == 0.9 and s9["cost"] <= 0.9 and s10["cost"] >= s9["cost"]
    assert set(s9["tiles_per_level"]) <= {"a6k1", "a6"} and sum(s9["tiles_per_level"].values()) == s9["tiles"]
    r = run(app, ["run", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png"), "-m", str(tmp_path / "exp"),
                  "--budget", "0.1"])
    assert r.exit_code != 0 and "below the cheapest level's cost" in r.output + str(r.exception)


def test_the_time_psnr_plot_draws_every_setting(tmp_path):
    """bench/plot_time_psnr.py: one marker per setting with a PSNR, at its time and PSNR."""
    import subprocess
    import sys
    import xml.etree.ElementTree as ET

    from conftest import ROOT

    d = {"images": "Set14 LR images (x2)", "backend": "onnxruntime", "threads": 1, "settings": {
        "old": {"time_vs_old": 1.0, "psnr": 32.70}, "static a6k8": {"time_vs_old": 0.55, "psnr": 32.72},
        "budget 0.45": {"time_vs_old": 0.45, "psnr": 32.56}, "budget 0.55": {"time_vs_old": 0.53, "psnr": 32.67},
        "no psnr": {"time_vs_old": 0.9, "psnr": None}}}
    (tmp_path / "a.json").write_text(json.dumps(d))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "plot_time_psnr.py"), str(tmp_path / "a.json"), "-o",
                        str(tmp_path / "p.svg")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    svg = ET.parse(tmp_path / "p.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    circles = svg.findall(f"{ns}circle")
    assert len(circles) == 2 and len(svg.findall(f"{ns}rect")) == 2  # the frame + one static level
    assert len(svg.findall(f"{ns}polyline")) == 1
    # the cheaper budget is left of the dearer one, and lower (less PSNR is further down)
    (x1, y1), (x2, y2) = sorted((float(c.get("cx")), float(c.get("cy"))) for c in circles)
    assert x1 < x2 and y1 > y2
    labels = [t.text for t in svg.findall(f"{ns}text")]
    assert "no psnr" not in labels and "static a6k8" in labels


# -- measured cost tables ---------------------------------------------------------------------
def test_a_cost_table_is_picked_by_backend_and_thread_count(tiny_timed_export):
    import dataclasses

    from granular_mobile.runtime.level_info import MeasuredCosts

    exp, _ = tiny_timed_export
    man = Manifest.from_json((exp / "manifest.json").read_text())
    g = dataclasses.replace(man.level_gate, measured={"onnxruntime@1": MeasuredCosts((0.3, 1.0, 1.2), "ort 1", "c1"),
                                                       "onnxruntime@2": MeasuredCosts((0.5, 1.0, 1.1), "ort 1", "c2")})
    assert g.costs_for("onnxruntime", 1) == ((0.3, 1.0, 1.2), "onnxruntime@1")
    assert g.costs_for("onnxruntime", 2) == ((0.5, 1.0, 1.1), "onnxruntime@2")
    assert g.costs_for("onnxruntime", 8)[1] == "onnxruntime@2"  # the nearest thread count
    assert g.costs_for("tflite", 2) == (man.level_gate.costs, "default")  # none measured there
    ties = dataclasses.replace(g, measured={"onnxruntime@1": MeasuredCosts((0.3, 1.0, 1.2)),
                                            "onnxruntime@3": MeasuredCosts((0.5, 1.0, 1.1))})
    assert ties.costs_for("onnxruntime", 2)[1] == "onnxruntime@1"  # equally near: the fewer threads
    back = Manifest.from_dict(json.loads(man.replace(level_gate=g).to_json()))
    assert back.level_gate == g
    with pytest.raises(ConfigError, match="not cheapest first"):
        dataclasses.replace(g, measured={"onnxruntime@1": MeasuredCosts((0.5, 0.3, 1.0))})
    with pytest.raises(ConfigError, match="is not BACKEND@THREADS"):
        dataclasses.replace(g, measured={"onnx@2": MeasuredCosts((0.3, 1.0, 1.2))})  # a target, not a backend
    # a manifest with a bad table still loads: the table is left out, with a warning
    from granular_mobile.errors import GdqWarning

    d = json.loads(man.replace(level_gate=g).to_json())
    d["level_gate"]["measured"]["onnxruntime@1"]["costs"] = [0.5, 0.3, 1.0]
    with pytest.warns(GdqWarning, match="not cheapest first"):
        read = Manifest.from_dict(d).level_gate
    assert list(read.measured) == ["onnxruntime@2"]
    with pytest.raises(ConfigError, match="one positive cost per choice"):
        dataclasses.replace(g, measured={"onnxruntime@1": MeasuredCosts((0.3, 1.0))})
    with pytest.raises(ConfigError, match="is not BACKEND@THREADS"):
        dataclasses.replace(g, measured={"onnxruntime": MeasuredCosts((0.3, 1.0, 1.2))})


def test_the_runtime_allocates_with_the_table_of_its_backend_and_threads(tiny_timed_export, tmp_path):
    """A table measured for the backend and thread count the runtime runs at replaces the
    gate's costs: the same budget buys other levels, and the report names the table."""
    import dataclasses
    import shutil

    from granular_mobile.runtime.backends import usable_cores
    from granular_mobile.runtime.budget import allocate
    from granular_mobile.runtime.level_info import MeasuredCosts, cost_key

    exp, _ = tiny_timed_export
    img = mixed_image()
    be0 = Upscaler.load(str(exp), backend="onnxruntime", threads=0).backend
    _, r0 = Upscaler(be0, overlap=8, budget=0.8)(img)
    assert r0.cost_table == "default"
    out = tmp_path / "exp"
    shutil.copytree(exp, out)
    man = Manifest.from_json((out / "manifest.json").read_text())
    table = (0.3, 1.0, 1.05)  # the exit much cheaper than the gate's 0.6: more tiles fit at dearer levels
    key = cost_key("onnxruntime", be0.threads or usable_cores())
    man.replace(level_gate=dataclasses.replace(man.level_gate, measured={key: MeasuredCosts(table)})).write(out)
    be = Upscaler.load(str(out), backend="onnxruntime", threads=0).backend
    up = Upscaler(be, overlap=8, budget=0.8)
    _, rep = up(img)
    assert rep.cost_table == key and up.costs == table
    from granular_mobile.runtime.tiler import TilePlan, extract_tiles

    plan = TilePlan(img.shape[0], img.shape[1], be.tile, be.tile - up.overlap, be.scale, up.merge)
    tiles = extract_tiles(img, plan).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    scores = np.concatenate([be.scores(tiles[i:i + 1]) for i in range(len(tiles))])
    want = [be.level_gate.choices[c] for c in allocate(scores, table, 0.8)]
    assert rep.tile_levels == want != r0.tile_levels
    assert rep.cost == pytest.approx(np.mean([table[be.level_gate.choices.index(lv)] for lv in want]))
    # a table whose cheapest choice costs more than the model's budget (0.8): the default budget
    # is the nearest it can meet, every tile at that choice
    man.replace(level_gate=dataclasses.replace(man.level_gate, measured={key: MeasuredCosts((0.9, 1.0, 1.05))})).write(out)
    be = Upscaler.load(str(out), backend="onnxruntime", threads=0).backend
    _, rep = Upscaler(be, overlap=8)(img)
    assert rep.budget == 0.9 and set(rep.tile_levels) == {"a6k1"}


def test_cost_tables_price_each_choice_against_the_full_depth_graphs(tiny_timed_export):
    """The reference is the median of the full-depth graphs that run the same kernels (each of
    them costs 1.0): on onnxruntime a graph with u8u8 convs is left out (priced against it)."""
    from granular_mobile.bench import cost_tables

    exp, _ = tiny_timed_export
    man = Manifest.from_json((exp / "manifest.json").read_text())
    ms = {"a4": 90.0, "a5": 100.0, "a6": 110.0, "a8": 300.0, "a6k1": 40.0}
    rows = [{"backend": be, "threads": 2, "mode": lv, "tiles": 10, "stages_s": {"sr": v * 10 / 1000}, "runtime": be}
            for be in ("onnxruntime", "tflite") for lv, v in ms.items()]
    t = cost_tables({"rows": rows}, man, "cmd")
    u8 = man.targets["onnx"].u8u8_convs or {}
    ref_onnx = 100.0 if u8.get(8) else 105.0
    assert t["onnxruntime@2"].costs == (round(40 / ref_onnx, 4), 1.0, 1.0 if not u8.get(8) else 3.0)
    assert t["tflite@2"].costs == (round(40 / 105, 4), 1.0, 1.0)  # equal kernels and MACs: their spread is noise
    assert t["tflite@2"].command == "cmd"
    with pytest.raises(ConfigError, match=r"did not time \['a6k1'\]"):
        cost_tables({"rows": [r for r in rows if r["mode"] != "a6k1"]}, man, "cmd")


@pytest.mark.slow
def test_gdq_bench_costs_writes_the_measured_tables(tiny_timed_export, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import make_timed_export

    exp, _ = tiny_timed_export
    # 8 blocks of 32 channels: the 1-block exit is cheaper than the full depth by far more than
    # the noise (the 2-block model's tiles take 2 ms, mostly per-call overhead)
    out, _ = make_timed_export(tmp_path / "exp", n_blocks=8, n_feats=32, tile=48, targets=("onnx",))
    j = tmp_path / "b.json"
    # without torch, as on a device with the runtime alone
    argv = ["gdq", "bench", "-m", str(out), "--costs", "--backends", "onnxruntime", "--threads", "1", "--rounds", "2",
            "--json", str(j)]
    code = f"import sys\nsys.modules['torch'] = None\nsys.argv = {argv!r}\nfrom granular_mobile.cli import main\nmain()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(j.read_text())
    assert {x["mode"] for x in res["rows"]} == {"a4", "a5", "a6", "a8", "a6k1"}  # levels only, no torch
    g = Manifest.from_json((out / "manifest.json").read_text()).level_gate
    assert list(g.measured) == ["onnxruntime@1"] and g.measured["onnxruntime@1"].to_dict() == res["cost_tables"]["onnxruntime@1"]
    assert g.measured["onnxruntime@1"].runtime.startswith("onnxruntime ") and "--costs" in g.measured["onnxruntime@1"].command
    assert res["cost_choices"] == ["a6k1", "a6", "a8"]
    for args, msg in ((["-m", str(exp.parent.parent / "nope")], "has no manifest.json"), ([], "give --model (an export folder of yours"),
                      (["-m", str(out), "--backends", "torch"], "not torch")):
        r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "bench", "--costs", *args], capture_output=True,
                           text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr and msg in r.stdout + r.stderr, (args, r.stderr)
