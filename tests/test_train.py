"""Training on tiny models and crops (the real runs are scripts, not tests)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from granular_mobile.checkpoint import load_model, read_checkpoint
from granular_mobile.config import ModelConfig
from granular_mobile.errors import CheckpointError, ConfigError
from granular_mobile.train import TrainConfig, train

TINY = dict(n_blocks=2, n_feats=16)


def _cfg(data, **kw):
    base = dict(data=(str(data),), patch=16, batch=4, iters=40, lr=2e-3, warmup=5, eval_every=0, ckpt_every=10, threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def fp_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp")
    losses = []
    final = train(_cfg(tiny_data, iters=60), out, ModelConfig(arch="srresnet", quantized=False, **TINY),
                  on_step=lambda d: losses.append(d["loss"]), log=lambda s: None)
    return out, final, losses


def test_fp_training_lowers_loss(fp_run):
    out, final, losses = fp_run
    assert len(losses) == 60
    assert losses[-1] < 0.6 * losses[0]
    ck = read_checkpoint(final)
    assert ck["model"]["quantized"] is False and ck["meta"]["train_config"]["iters"] == 60
    assert (out / "last.pt").is_file()


def test_resume_continues_to_more_iterations(fp_run, tmp_path):
    out, _, _ = fp_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    seen = []
    cfg = TrainConfig(**{**read_checkpoint(run / "last.pt")["train"]["config"], "iters": 70})
    train(cfg, run, resume=True, on_step=lambda d: seen.append(d["iteration"]), log=lambda s: None)
    assert seen == list(range(61, 71))
    assert read_checkpoint(run / "final.pt")["meta"]["iteration"] == 70


def test_cli_resume_takes_the_options_of_the_run(fp_run, tmp_path):
    """A bare --resume continues with the run's own options, not the command line's defaults
    (patch 16 / batch 4 / lr 2e-3 here, not 32 / 16 / 1e-3); what is given replaces them and
    is logged; the model's shape comes from last.pt and cannot be given."""
    from typer.testing import CliRunner

    from granular_mobile.cli import app

    out, _, _ = fp_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    r = CliRunner().invoke(app, ["train", "-o", str(run), "--resume", "--iters", "62"])
    assert r.exit_code == 0, r.output
    cfg = read_checkpoint(run / "last.pt")["train"]["config"]
    assert (cfg["patch"], cfg["batch"], cfg["lr"], cfg["iters"]) == (16, 4, 2e-3, 62)
    assert "resume:" not in r.output  # nothing that trains changed
    r = CliRunner().invoke(app, ["train", "-o", str(run), "--resume", "--iters", "63", "--lr", "1e-3"])
    assert r.exit_code == 0, r.output
    assert "resume: lr: 0.002 -> 0.001" in r.output
    cfg = read_checkpoint(run / "last.pt")["train"]["config"]
    assert (cfg["patch"], cfg["lr"], cfg["iters"]) == (16, 1e-3, 63)
    r = CliRunner().invoke(app, ["train", "-o", str(run), "--resume", "--n-blocks", "4"])
    assert isinstance(r.exception, ConfigError) and "--n-blocks" in str(r.exception)


def test_distill_from_default_stays_a_name(tiny_data, tmp_path):
    """--distill-from default is stored as the name, so that a resumed run finds the shipped
    twin in any checkout (a resolved path would tie it to the one it started in)."""
    from typer.testing import CliRunner

    from granular_mobile.cli import app

    # (one level: the default model's 8-bit level has a network of its own, so it trains a level at a time)
    r = CliRunner().invoke(app, ["quantize", "--init", "default", "-o", str(tmp_path), "--iters", "1", "--patch", "16",
                                 "--batch", "2", "--data", str(tiny_data), "--eval-every", "0", "--threads", "1",
                                 "--distill", "1", "--distill-from", "default", "--tune-level", "5"])
    assert r.exit_code == 0, r.output
    assert read_checkpoint(tmp_path / "last.pt")["train"]["config"]["distill_from"] == "default"


def test_fp_init_starts_from_the_checkpoint_weights(fp_run, tiny_data, tmp_path):
    _, fp_final, losses = fp_run
    seen = []
    mc = ModelConfig(arch="srresnet", quantized=False, **TINY)
    final = train(_cfg(tiny_data, iters=5, lr=1e-9, lr_min=1e-12, warmup=1), tmp_path, mc, init=str(fp_final),
                  on_step=lambda d: seen.append(d["loss"]), log=lambda s: None)
    # a negligible learning rate: the first loss is the trained model's, not a fresh one's
    assert seen[0] < 0.8 * losses[0]
    a, b = read_checkpoint(fp_final)["state_dict"], read_checkpoint(final)["state_dict"]
    w = next(k for k in a if k.endswith("weight") and a[k].dim() == 4)
    assert torch.allclose(a[w], b[w], atol=1e-6)
    with pytest.raises(CheckpointError, match="is not"):
        train(_cfg(tiny_data, iters=2), tmp_path / "x", ModelConfig(arch="srresnet", quantized=False, n_blocks=3, n_feats=16),
              init=str(fp_final), log=lambda s: None)


def test_resume_needs_checkpoint(tmp_path, tiny_data):
    with pytest.raises(CheckpointError, match="no '.*last.pt' to resume"):
        train(_cfg(tiny_data), tmp_path, resume=True)


def test_qat_from_fp(fp_run, tiny_data, tmp_path):
    _, fp_final, _ = fp_run
    losses, fabs = [], []
    cfg = _cfg(tiny_data, mode="qat", iters=30, lr=5e-4, target_fab=4.5, fab_lambda=0.5)
    mc = ModelConfig(arch="srresnet", quantized=True, **TINY)
    final = train(cfg, tmp_path, mc, init=str(fp_final), on_step=lambda d: (losses.append(d["loss"]), fabs.append(d["fab"])),
                  log=lambda s: None)
    m = load_model(str(final))
    assert m.cfg.quantized and m.cfg.e2b.calibrated and m.cfg.e2b.tile == 96
    assert losses[-1] < losses[0]
    assert all(4 <= f <= 8 for f in fabs)
    # every quantizer was initialised (signedness + step) from data, not left at its default
    for mod in m.modules():
        if hasattr(mod, "initialized"):
            assert mod.initialized.item() == 1


def test_qat_continues_from_a_granular_dq_model(fp_run, tiny_data, tmp_path):
    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, **TINY)
    first = train(_cfg(tiny_data, mode="qat", iters=20, lr=5e-4), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    trained = read_checkpoint(first)["state_dict"]
    losses = []
    again = train(_cfg(tiny_data, mode="qat", iters=3, lr=1e-9, lr_min=1e-12, warmup=1, gate_lr_mult=1.0), tmp_path / "b",
                  load_model(str(first)).cfg, init=str(first), on_step=lambda d: losses.append(d["loss"]), log=lambda s: None)
    cont = read_checkpoint(again)["state_dict"]
    # quantizer steps and the gate are the first run's, not re-initialised from data
    for k in trained:
        if k.endswith(".alpha") or k.startswith("encoder."):
            assert torch.allclose(trained[k].float(), cont[k].float(), atol=1e-6), k
    with pytest.raises(ConfigError, match="bits"):
        from typer.testing import CliRunner

        from granular_mobile.cli import app

        r = CliRunner().invoke(app, ["quantize", "--init", str(first), "-o", str(tmp_path / "c"), "--bits", "4,8"])
        raise r.exception


def test_qat_rejects_mismatched_init(fp_run, tiny_data, tmp_path):
    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, n_blocks=3, n_feats=16)
    with pytest.raises(CheckpointError, match="twin"):
        train(_cfg(tiny_data, mode="qat", iters=2), tmp_path, mc, init=str(fp_final), log=lambda s: None)
    with pytest.raises(ConfigError, match="needs ``init``"):
        train(_cfg(tiny_data, mode="qat", iters=2), tmp_path, ModelConfig(arch="srresnet", **TINY), log=lambda s: None)


@pytest.mark.slow
def test_torchrun_ddp_two_processes(tiny_data, tmp_path):
    """gdq train runs unchanged under torchrun (2 CPU processes, gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "granular_mobile.cli", "train", "-o", str(tmp_path / "ddp"), "--n-blocks", "1", "--n-feats", "8",
           "--iters", "6", "--batch", "2", "--patch", "16", "--eval-every", "0", "--ckpt-every", "3", "--data", str(tiny_data)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    ck = read_checkpoint(tmp_path / "ddp" / "final.pt")
    assert ck["meta"]["world_size"] == 2 and ck["meta"]["iteration"] == 6


def test_gate_warmup_random_levels_and_frozen_gate(fp_run, tiny_data, tmp_path):
    _, fp_final, _ = fp_run
    fabs = []
    cfg = _cfg(tiny_data, mode="qat", iters=12, lr=5e-4, gate_warmup=12, warmup=1)
    mc = ModelConfig(arch="srresnet", quantized=True, **TINY)
    final = train(cfg, tmp_path, mc, init=str(fp_final), on_step=lambda d: fabs.append(d["fab"]), log=lambda s: None)
    m = load_model(str(final))
    assert m.encoder.gbc.gate[0].bias.abs().max() == 0  # initialised to zero; frozen during warm-up
    # the reported FAB (EMA of the batch mean level) moves: levels are drawn at random
    assert len({round(f, 6) for f in fabs}) > 1 and all(4 <= f <= 8 for f in fabs)


def test_budget_term_pulls_fab_up_when_below_target():

    from granular_mobile.models import create_model

    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).train()
    with torch.no_grad():
        m(torch.rand(4, 3, 16, 16), 0)
        m.encoder.gbc.gate[0].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # gate prefers 4 bits
    _, ctrl = m(torch.rand(8, 3, 16, 16), return_ctrl=True)
    gap = ctrl.expected_bits.mean() - 4.5
    assert gap < 0
    gap.abs().backward()
    # descending the two-sided term lowers the 4-bit logit (raises FAB); relu() would give no gradient
    assert m.encoder.gbc.gate[0].bias.grad[0] > 0


def test_quantize_needs_init_or_resume(tmp_path):
    from typer.testing import CliRunner

    from granular_mobile.cli import app

    r = CliRunner().invoke(app, ["quantize", "-o", str(tmp_path)])
    assert isinstance(r.exception, ConfigError) and "--init" in str(r.exception)


@pytest.mark.slow
def test_qat_int8_numerics_from_a_float_numerics_model(fp_run, tiny_data, tmp_path):
    """A float-numerics Granular-DQ model fine-tuned with the export's rounding points: its
    int8 grids start at the calibrated scales, train, travel in the checkpoint, and resume."""
    import dataclasses

    from granular_mobile.data.calibration import calibration_tiles
    from granular_mobile.ir import deployed_programs, run_program

    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, **TINY)
    first = train(_cfg(tiny_data, mode="qat", iters=10, lr=5e-4), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    fl = load_model(str(first))
    losses = []
    cfg = _cfg(tiny_data, mode="qat", iters=20, lr=5e-4, distill=0.5, distill_from=str(fp_final), ckpt_every=10)
    out = train(cfg, tmp_path / "b", dataclasses.replace(fl.cfg, numerics="int8"), init=str(first),
                on_step=lambda d: losses.append(d["loss"]), log=lambda s: None)
    m = load_model(str(out))
    assert m.cfg.numerics == "int8" and len(m.grid_modules()) == 2 * 4 + 4 + 2
    assert all(g.initialized.item() == 1 for g in m.grid_modules())
    # the grids moved from their calibrated start (they train)
    tiles = calibration_tiles(96)
    start = deployed_programs(fl, tiles)[4]
    learned = deployed_programs(m, None)[4]
    moved = [a.out for a, b in zip(start.nodes, learned.nodes, strict=True) if a.out_q is not None and a.out_q != b.out_q]
    assert moved
    x = tiles[:2, :, :32, :32]
    assert torch.isfinite(run_program(learned, x)).all()
    # resume keeps going with the grids of last.pt
    seen = []
    train(TrainConfig(**{**read_checkpoint(tmp_path / "b" / "last.pt")["train"]["config"], "iters": 22}), tmp_path / "b",
          resume=True, on_step=lambda d: seen.append(d["iteration"]), log=lambda s: None)
    assert seen == [21, 22]
    # fine-tuning an int8-numerics model further keeps its learned grids (not re-calibrated)
    again = train(_cfg(tiny_data, mode="qat", iters=1, lr=1e-9, lr_min=1e-12, warmup=1, gate_lr_mult=1.0),
                  tmp_path / "d", m.cfg, init=str(out), log=lambda s: None)
    a, b = read_checkpoint(out)["state_dict"], read_checkpoint(again)["state_dict"]
    for k in a:
        if ".grids." in k or k.startswith("grids."):
            assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-4), k
    # an int8-numerics model does not go back to float numerics
    with pytest.raises(CheckpointError, match="is not the one"):
        train(_cfg(tiny_data, mode="qat", iters=1), tmp_path / "c", fl.cfg, init=str(out), log=lambda s: None)


def test_random_levels_train_every_level_and_keep_the_gate_out():
    from granular_mobile.models import create_model

    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).train()
    x = torch.rand(64, 3, 16, 16)
    with torch.no_grad():
        m(x[:4], 0)  # quantizer init
    m.random_levels = 1.0
    sr, ctrl = m(x, return_ctrl=True)
    assert ctrl is not None
    sr.mean().backward()
    # every crop re-drawn: the gate gets gradient from the bit-budget term only, not from SR
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.encoder.parameters())
    m.zero_grad()
    m.random_levels = 0.0
    sr, _ = m(x, return_ctrl=True)
    sr.mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
    with pytest.raises(ConfigError, match="random_levels"):
        TrainConfig(random_levels=1.5)


def test_random_levels_cover_the_levels():
    from granular_mobile.models import create_model

    torch.manual_seed(1)
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).train()
    m.random_levels = 0.5
    bi = torch.zeros(4000, dtype=torch.long)
    mix = torch.nn.functional.one_hot(bi, 4).float()
    out, mix2 = m._random_levels(bi, mix)
    share = torch.bincount(out, minlength=4).float() / len(out)
    # half kept at level 0, half uniform: 0.625 / 0.125 / 0.125 / 0.125
    assert abs(share[0] - 0.625) < 0.03 and all(abs(s - 0.125) < 0.03 for s in share[1:])
    assert torch.equal(mix2.argmax(1), out)


def test_qat_int8_numerics_from_the_full_precision_twin(fp_run, tiny_data, tmp_path):
    """What `gdq quantize --init <twin>` does by default: k-bit steps from the first crops,
    int8 grids from the bundled calibration tiles, then training with every rounding point."""
    _, fp_final, _ = fp_run
    losses = []
    mc = ModelConfig(arch="srresnet", quantized=True, numerics="int8", **TINY)
    final = train(_cfg(tiny_data, mode="qat", iters=15, lr=5e-4), tmp_path, mc, init=str(fp_final),
                  on_step=lambda d: losses.append(d["loss"]), log=lambda s: None)
    m = load_model(str(final))
    assert m.cfg.numerics == "int8" and all(g.initialized.item() == 1 for g in m.grid_modules())
    steps = torch.stack([g.alpha.detach() for g in m.grid_modules()])
    assert torch.isfinite(steps).all() and (steps > 0).all() and (steps < 1).all()
    assert losses[-1] < losses[0]


def test_tune_level_moves_only_that_levels_steps(fp_run, tiny_data, tmp_path):
    """--tune-level 8: only the 8-bit entries of the per-level steps train; the weights, the
    controller and the 4/5/6-bit levels stay bit for bit (their graphs export unchanged)."""
    from granular_mobile.ir import deployed_programs

    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, numerics="int8", **TINY)
    base = train(_cfg(tiny_data, mode="qat", iters=4, lr=5e-4), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    bm = load_model(str(base))
    seen = []
    tuned = train(_cfg(tiny_data, mode="qat", iters=6, lr=5e-3, warmup=1, tune_level=8), tmp_path / "b", bm.cfg,
                  init=str(base), on_step=lambda d: seen.append(d["fab"]), log=lambda s: None)
    assert seen and all(f == 8.0 for f in seen)
    tm = load_model(str(tuned))
    assert tm.cfg == bm.cfg  # E2B thresholds are the --init's, not recalibrated
    a, b = bm.state_dict(), tm.state_dict()
    per_level = {n + ".alpha" for n, m in tm.named_modules() if hasattr(m, "alpha") and m.alpha.numel() == len(tm.bits)}
    moved = 0
    for k in a:
        if k in per_level:
            assert torch.equal(a[k][:3], b[k][:3]), k
            moved += int(not torch.equal(a[k][3], b[k][3]))
        else:
            assert torch.equal(a[k], b[k]), k
    assert moved > len(per_level) // 2
    before, after = deployed_programs(bm, None), deployed_programs(tm, None)
    for bits in (4, 5, 6):
        assert [n.out_q for n in before[bits].nodes] == [n.out_q for n in after[bits].nodes]
    assert [n.out_q for n in before[8].nodes] != [n.out_q for n in after[8].nodes]
    # a resume goes on at its own level only (its Adam moments belong to that level)
    stored = read_checkpoint(tmp_path / "b" / "last.pt")["train"]["config"]
    with pytest.raises(ConfigError, match="tune_level=8, not 6"):
        train(TrainConfig(**{**stored, "tune_level": 6}), tmp_path / "b", resume=True, log=lambda s: None)
    seen = []
    train(TrainConfig(**{**stored, "iters": 8}), tmp_path / "b", resume=True,
          on_step=lambda d: seen.append(d["iteration"]), log=lambda s: None)
    assert seen == [7, 8]


def test_tune_level_errors(fp_run, tiny_data, tmp_path):
    _, fp_final, _ = fp_run
    with pytest.raises(ConfigError, match="qat"):
        TrainConfig(tune_level=8)
    with pytest.raises(ConfigError, match="random_levels"):
        TrainConfig(mode="qat", tune_level=8, random_levels=0.5)
    from typer.testing import CliRunner

    from granular_mobile.cli import app

    r = CliRunner().invoke(app, ["quantize", "--init", str(fp_final), "-o", str(tmp_path / "c"), "--tune-level", "8"])
    assert r.exit_code != 0 and "full-precision model" in str(r.exception)
    mc = ModelConfig(arch="srresnet", quantized=True, **TINY)
    with pytest.raises(ConfigError, match=r"valid: \[4, 5, 6, 8\]"):
        train(_cfg(tiny_data, mode="qat", iters=1, tune_level=7), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    with pytest.raises(ConfigError, match="must be the Granular-DQ model"):
        train(_cfg(tiny_data, mode="qat", iters=1, tune_level=8), tmp_path / "b", mc, init=str(fp_final), log=lambda s: None)


def test_level_capacity_probe_trains_what_it_says(fp_run, tiny_data, tmp_path):
    """experiments/level_capacity.py: inside ``trainable("bn")``, --tune-level also trains the blocks'
    BatchNorm affine, and nothing else moves; inside ``trainable("steps")`` only the level's steps;
    outside, the trainer is as it was."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
    try:
        import level_capacity
    finally:
        sys.path.pop(0)
    from granular_mobile.train import trainer

    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, numerics="int8", **TINY)
    base = train(_cfg(tiny_data, mode="qat", iters=2, lr=5e-4), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    bm = load_model(str(base))
    fns = trainer._param_groups
    for variant in ("steps", "bn"):
        with level_capacity.trainable(variant, 1.0):
            tuned = train(_cfg(tiny_data, mode="qat", iters=4, lr=5e-3, warmup=1, tune_level=8), tmp_path / variant,
                          bm.cfg, init=str(base), log=lambda s: None)
        assert trainer._param_groups == fns
        a, b = bm.state_dict(), load_model(str(tuned)).state_dict()
        moved = {k for k in a if not torch.equal(a[k], b[k])}
        bn = {k for k in a if ".bn" in k and k.endswith((".weight", ".bias"))}
        steps = {k for k in moved if k.endswith(".alpha") and ".wq." not in k}
        assert steps, variant  # the level's own steps train in every variant
        assert not any(k.startswith("encoder.") or ".wq." in k or "running_" in k for k in moved), variant
        assert moved - steps == (bn if variant == "bn" else set()), variant


@pytest.mark.slow
def test_own_weights_train_that_levels_copy_only(fp_run, tiny_data, tmp_path):
    """--tune-level 8 --own-weights: level 8 gets a copy of the shared network (ModelConfig.
    level_weights) whose weights and 8-bit steps train; the shared network, the gate and the
    4/5/6-bit programs stay bit for bit, and the 8-bit program runs the copy."""
    import dataclasses

    from granular_mobile.ir import deployed_programs

    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, numerics="int8", **TINY)
    base = train(_cfg(tiny_data, mode="qat", iters=2, lr=5e-4), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    bm = load_model(str(base))
    with pytest.raises(ConfigError, match="own_weights needs tune_level"):
        TrainConfig(mode="qat", own_weights=True)
    with pytest.raises(ConfigError, match="no weights of its own"):  # the model config must have the copy
        train(_cfg(tiny_data, mode="qat", iters=1, tune_level=8, own_weights=True), tmp_path / "x", bm.cfg,
              init=str(base), log=lambda s: None)
    wc = dataclasses.replace(bm.cfg, level_weights=(8,))
    tuned = train(_cfg(tiny_data, mode="qat", iters=4, lr=5e-3, warmup=1, tune_level=8, own_weights=True),
                  tmp_path / "b", wc, init=str(base), log=lambda s: None)
    tm = load_model(str(tuned))
    assert tm.cfg == wc
    a, b = bm.state_dict(), tm.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the shared network moved"
    own = {k.removeprefix("level_nets.8."): v for k, v in b.items() if k.startswith("level_nets.8.")}
    assert set(own) == set(tm.shared_state())
    moved = {k for k in own if not torch.equal(own[k], a[k])}
    assert any(k.endswith("conv1.weight") for k in moved) and "tail.1.weight" in moved
    assert not any(".wq." in k or "running_" in k for k in moved)
    per_level = {k for k in own if k.endswith(".alpha") and own[k].numel() == len(tm.bits)}
    assert per_level & moved and all(torch.equal(own[k][:3], a[k][:3]) for k in per_level)
    before, after = deployed_programs(bm, None), deployed_programs(tm, None)
    for bits in (4, 5, 6):
        assert all(torch.equal(torch.as_tensor(p.weight), torch.as_tensor(q.weight))
                   for p, q in zip(before[bits].nodes, after[bits].nodes, strict=True) if hasattr(p, "weight"))
    assert any(not torch.equal(torch.as_tensor(p.weight), torch.as_tensor(q.weight))
               for p, q in zip(before[8].nodes, after[8].nodes, strict=True) if hasattr(p, "weight"))
    # a resume keeps its optimizer layout: own_weights cannot be switched off
    stored = read_checkpoint(tmp_path / "b" / "last.pt")["train"]["config"]
    with pytest.raises(ConfigError, match="own_weights=True, not False"):
        train(TrainConfig(**{**stored, "own_weights": False}), tmp_path / "b", resume=True, log=lambda s: None)
    # the CLI adds the copy to the --init's model
    from typer.testing import CliRunner

    from granular_mobile.cli import app

    r = CliRunner().invoke(app, ["quantize", "--init", str(base), "-o", str(tmp_path / "c"), "--own-weights"])
    assert r.exit_code != 0 and "own_weights needs tune_level" in str(r.exception)
    r = CliRunner().invoke(app, ["quantize", "--init", str(base), "-o", str(tmp_path / "d"), "--tune-level", "8",
                                 "--own-weights", "--iters", "1", "--data", str(tiny_data), "--patch", "16", "--batch",
                                 "2", "--eval-every", "0", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert load_model(str(tmp_path / "d" / "final.pt")).cfg.level_weights == (8,)
    # the joint fine-tuning would train the copy from the few tiles the gate sends to it
    with pytest.raises(ConfigError, match="trains one level at a time"):
        train(_cfg(tiny_data, mode="qat", iters=1), tmp_path / "e", wc, init=str(tuned), log=lambda s: None)
    # under DDP every parameter that trains gets a gradient (the shared network's steps do not
    # train when the copy runs the level)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "granular_mobile.cli", "quantize", "--init", str(base), "-o", str(tmp_path / "ddp"), "--tune-level", "8",
           "--own-weights", "--iters", "3", "--batch", "2", "--patch", "16", "--eval-every", "0", "--data", str(tiny_data)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow
def test_an_exit_level_trains_its_copy_only(fp_run, tiny_data, tiny_bench, tmp_path):
    """--tune-level 6 --blocks 1: a new exit level (6 bits, 1 of 2 blocks) with a network of its
    own; only that copy's used part trains, every other level stays bit for bit, and the CLI
    adds the level to the --init's model."""
    from typer.testing import CliRunner

    from granular_mobile.cli import app

    _, fp_final, _ = fp_run
    mc = ModelConfig(arch="srresnet", quantized=True, numerics="int8", **TINY)
    base = train(_cfg(tiny_data, mode="qat", iters=2, lr=5e-4), tmp_path / "a", mc, init=str(fp_final), log=lambda s: None)
    bm = load_model(str(base))
    with pytest.raises(ConfigError, match="blocks .an exit level. needs tune_level and own_weights"):
        TrainConfig(mode="qat", blocks=1)
    r = CliRunner().invoke(app, ["quantize", "--init", str(base), "-o", str(tmp_path / "b"), "--tune-level", "6",
                                 "--blocks", "1", "--iters", "3", "--lr", "5e-3", "--warmup", "1", "--data", str(tiny_data),
                                 "--patch", "16", "--batch", "2", "--eval-every", "0", "--threads", "1"])
    assert r.exit_code == 0, r.output
    tm = load_model(str(tmp_path / "b" / "final.pt"))
    assert tm.cfg.exits == ((6, 1),) and tm.cfg.level_weights == ()
    a, b = bm.state_dict(), tm.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the shared network moved"
    own = {k.removeprefix("level_nets.6k1."): v for k, v in b.items() if k.startswith("level_nets.6k1.")}
    moved = {k for k in own if not torch.equal(own[k], a[k])}
    assert "body.0.conv1.weight" in moved and "tail.1.weight" in moved
    assert not any(k.startswith("body.1.") for k in moved), "a block after the exit trained"
    with torch.no_grad():
        x = torch.rand(2, 3, 16, 16)
        assert not torch.equal(tm(x, 4), tm(x, 2))
    # gdq eval runs the exit level (its own PSNR, the MACs of its blocks only)
    ev = []
    for extra in (["--blocks", "1"], []):
        r = CliRunner().invoke(app, ["eval", "-m", str(tmp_path / "b" / "final.pt"), "--data", "Tiny", "--root",
                                     str(tiny_bench), "--tile", "32", "--step", "30", "--bits", "6", "--no-bicubic",
                                     "--json", str(tmp_path / "ev.json"), *extra])
        assert r.exit_code == 0, r.output
        ev.append(json.loads((tmp_path / "ev.json").read_text())["results"][0])
    assert "blocks=1" in ev[0]["model"] and ev[0]["psnr"] != ev[1]["psnr"] and ev[0]["bitops_g"] < ev[1]["bitops_g"]
    # the export writes every level, the exit level's graph too
    from granular_mobile.export import export

    man = export(tm, ["onnx"], tmp_path / "exp", tile=16)
    assert man.bits == (4, 5, 6, 8) and [lv.name for lv in man.levels][-1] == "a6k1"
    assert (tmp_path / "exp" / man.targets["onnx"].level_files()["a6k1"]).is_file()
    # the exit level is another level: a resume goes on at it only, and a bad depth is one line
    stored = read_checkpoint(tmp_path / "b" / "last.pt")["train"]["config"]
    with pytest.raises(ConfigError, match="blocks=1, not 0"):
        train(TrainConfig(**{**stored, "blocks": 0}), tmp_path / "b", resume=True, log=lambda s: None)
    r = CliRunner().invoke(app, ["quantize", "--init", str(base), "-o", str(tmp_path / "c"), "--tune-level", "6",
                                 "--blocks", "2", "--data", str(tiny_data)])
    assert r.exit_code != 0 and "exits: 2 blocks must be in 1..1" in str(r.exception)
    # under DDP every parameter that trains gets a gradient: the blocks after the exit do not train
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "granular_mobile.cli", "quantize", "--init", str(base), "-o", str(tmp_path / "ddp"), "--tune-level", "6",
           "--blocks", "1", "--iters", "2", "--batch", "2", "--patch", "16", "--eval-every", "0", "--data", str(tiny_data)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_x4_starts_from_the_x2_twin(fp_run, tiny_data, tmp_path):
    """gdq train --scale 4 --init <x2 twin>: the body, the first upsampling stage and the tail
    conv start as the x2 twin's; the second stage starts fresh; other shapes are refused."""
    _, fp_final, _ = fp_run
    x2 = load_model(str(fp_final))
    mc = ModelConfig(arch="srresnet", quantized=False, scale=4, **TINY)
    logs: list[str] = []
    final = train(_cfg(tiny_data, iters=1, lr=1e-9, warmup=1), tmp_path / "x4", mc, init=str(fp_final), log=logs.append)
    x4 = load_model(str(final))
    assert x4.cfg.scale == 4
    a, b = x2.state_dict(), x4.state_dict()
    for k in ("head.0.weight", "body.0.conv1.weight", "tail.0.0.weight", "tail.1.weight"):
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert "tail.0.3.weight" not in a and "tail.0.3.weight" in b
    assert any("tensors loaded; new: ['tail.0.3.weight', 'tail.0.5.weight']" in s for s in logs), logs
    with pytest.raises(CheckpointError, match="is not the one asked for"):
        train(_cfg(tiny_data, iters=1), tmp_path / "bad", ModelConfig(arch="srresnet", quantized=False, scale=4,
              n_blocks=3, n_feats=16), init=str(fp_final), log=lambda s: None)


def test_the_quantized_model_config_follows_what_it_starts_from(tmp_path):
    """``train.qat.qat_model_config``: what `gdq quantize` trains from its --init and options."""
    import dataclasses

    from granular_mobile.checkpoint import save_model
    from granular_mobile.errors import ConfigError
    from granular_mobile.models import build_from_config, create_model
    from granular_mobile.train.qat import qat_model_config

    torch.manual_seed(0)
    save_model(create_model("srresnet", n_blocks=2, n_feats=8), tmp_path / "fp.pt")
    q = create_model("srresnet_gdq", n_blocks=2, n_feats=8)
    save_model(build_from_config(dataclasses.replace(q.cfg, numerics="int8")), tmp_path / "q8.pt")
    fp, q8 = str(tmp_path / "fp.pt"), str(tmp_path / "q8.pt")

    c = qat_model_config(fp, (4, 5, 6, 8), "float")
    assert c.quantized and c.quant.bits == (4, 5, 6, 8) and c.numerics == "float" and c.n_blocks == 2
    c = qat_model_config(q8, (4, 5, 6, 8))
    assert c.quantized and c.numerics == "int8" and c.exits == () and c.level_weights == ()
    assert qat_model_config(q8, (4, 5, 6, 8), tune_level=6, blocks=1).exits == ((6, 1),)
    assert qat_model_config(q8, (4, 5, 6, 8), tune_level=8, own_weights=True).level_weights == (8,)
    for kw, msg in ((dict(init=fp, tune_level=6), "is a full-precision model"),
                    (dict(init=q8, bits=(4, 6)), r"with bits \[4, 5, 6, 8\], not ``bits`` 4,6"),
                    (dict(init=q8, numerics="float"), "cannot go back to ``numerics`` float"),
                    (dict(init=fp, numerics="fp16"), "``numerics`` 'fp16' is unknown")):
        with pytest.raises(ConfigError, match=msg):
            qat_model_config(**{"bits": (4, 5, 6, 8), **kw})
