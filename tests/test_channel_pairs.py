"""Channel reordering for onnxruntime's saturating u8s8 kernels: exact, and what it promises."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from granular_mobile.export.channel_pairs import (
    activation_max,
    max_matching,
    order_for_u8s8,
    pair_sums_fit,
)
from granular_mobile.export.exporter import calibration_tiles
from granular_mobile.ir import (
    Conv,
    build_program,
    calibrate_program,
    run_program,
)
from test_export import TILE, tiny


def _brute_matching_size(ok: np.ndarray) -> int:
    def best(free: tuple[int, ...]) -> int:
        if len(free) < 2:
            return 0
        i, rest = free[0], free[1:]
        b = best(rest)
        for j in rest:
            if ok[i, j]:
                b = max(b, 1 + best(tuple(k for k in rest if k != j)))
        return b

    return best(tuple(range(len(ok))))


def test_max_matching_is_maximum_on_random_graphs():
    rng = np.random.default_rng(1)
    for _ in range(150):
        n = int(rng.integers(2, 10))
        up = np.triu(rng.random((n, n)) < rng.random(), 1)
        ok = up | up.T
        mate = max_matching(ok)
        assert all(mate[j] == i and ok[i, j] for i, j in enumerate(mate) if j != -1)
        assert sum(j > i for i, j in enumerate(mate)) == _brute_matching_size(ok)


def test_pair_sums_fit_is_the_int16_bound():
    w = np.zeros((1, 4, 1, 1), np.int8)
    w[0, :2, 0, 0] = [64, 64]  # same sign: (64 + 64) * 255 = 32640 fits; 65 + 64 does not
    assert pair_sums_fit(w, 255)
    w[0, 0, 0, 0] = 65
    assert not pair_sums_fit(w, 255)
    assert pair_sums_fit(w, 63)  # k-bit activations (a <= 63) never saturate
    w[0, :2, 0, 0] = [127, -127]  # opposite signs: at most 127 * 255
    assert pair_sums_fit(w, 255)
    w[0, :, 0, 0] = [0, 127, 127, 0]  # pairs are (0, 1), (2, 3): not neighbours
    assert pair_sums_fit(w, 255)


@pytest.fixture(scope="module")
def prog8():
    """The tiny SRResNet's 8-bit program with block-conv integers shrunk to what trained convs
    look like (random init fills [-127, 127], so every pair of channels would clash)."""
    m, _ = tiny("srresnet")
    prog = calibrate_program(build_program(m, 8, "int8"), calibration_tiles(TILE)[:4])
    for n in prog.convs:
        if n.quantized_layer:
            n.weight = np.round(n.weight * 0.45).astype(np.int8)
    assert all(pair_sums_fit(n.weight, activation_max(n.in_q)) for n in prog.convs if n.integer)
    return prog


def _with_weight(prog, name: str, fn):
    p = dataclasses.replace(prog, nodes=[dataclasses.replace(n) for n in prog.nodes])
    n = next(n for n in p.nodes if isinstance(n, Conv) and n.name == name)
    n.weight = fn(n.weight.copy())
    return p


def test_reordering_removes_saturating_pairs_and_keeps_the_integers(prog8):
    def clash(w):
        # neighbours 0/1 (first block conv: residual stream) and 2/3 (second: its own channels)
        # carry large same-sign weights at one tap: a saturating pair in the natural order
        w[3, [0, 1], 1, 1] = 100
        w[5, [2, 3], 0, 2] = -90
        return w

    prog = _with_weight(_with_weight(prog8, "b0_conv1", clash), "b1_conv2", clash)
    risky = [n.name for n in prog.convs if n.integer and n.groups == 1 and not pair_sums_fit(n.weight, activation_max(n.in_q))]
    assert {"b0_conv1", "b1_conv2"} <= set(risky)
    out, still = order_for_u8s8(prog)
    assert still == []
    assert all(pair_sums_fit(n.weight, activation_max(n.in_q)) for n in out.convs if n.integer and n.groups == 1)
    x = calibration_tiles(TILE)[4:7]
    with torch.no_grad():
        assert torch.equal(run_program(prog, x), run_program(out, x))
    # the graph input and output keep their channel order (the head reads RGB, the tail writes it)
    assert np.array_equal(out.convs[0].weight.sum((0, 2, 3)), prog.convs[0].weight.sum((0, 2, 3)))
    assert np.array_equal(out.convs[-1].weight, prog.convs[-1].weight)


def test_no_pairing_keeps_the_order_and_reports_the_conv(prog8):
    prog = _with_weight(prog8, "b1_conv2", lambda w: np.full_like(w, 127))  # every pair clashes
    out, still = order_for_u8s8(prog)
    assert still == ["b1_conv2"]
    assert np.array_equal(next(n for n in out.convs if n.name == "b1_conv1").weight,
                          next(n for n in prog.convs if n.name == "b1_conv1").weight)


def test_onnx_export_is_exact_with_reordered_and_fallback_convs(prog8, tmp_path):
    """Reordered convs take int8 weights (u8s8 kernels), a conv with no safe order keeps uint8
    weights (u8u8 kernels); either way onnxruntime computes the reference's integers. On a CPU
    with VNNI the u8s8 kernels do not saturate at all, so this holds there trivially."""
    import onnx
    import onnxruntime as ort

    from granular_mobile.export.onnx import program_to_onnx, save_onnx

    def clash(w):
        w[:, :, 1, 1] = np.where(np.arange(w.shape[1]) % 2 == 0, 120, 110)[None, :]  # all same sign: no
        return w                                                                   # order fits at 8 bits

    def big(w):
        w[3, [0, 1], 1, 1] = 127
        w[2, [4, 5], 0, 0] = 127
        return w

    prog = _with_weight(_with_weight(prog8, "b0_conv2", clash), "b1_conv1", big)
    report: dict[str, list[str]] = {}
    path = save_onnx(program_to_onnx(prog, TILE, report=report), tmp_path / "sr_a8.onnx")
    assert report["u8u8_convs"] == ["b0_conv2"] == order_for_u8s8(prog)[1]
    inits = {i.name.split("__")[0]: i for i in onnx.load(path).graph.initializer}
    assert inits["b0_conv2_wq"].data_type == onnx.TensorProto.UINT8
    assert inits["b1_conv1_wq"].data_type == onnx.TensorProto.INT8
    tail = inits["tail_wq"]
    assert tail.dims[0] == 16  # 12 output channels padded for the indirect symmetric conv
    x = calibration_tiles(TILE)[:6].numpy()

    so = ort.SessionOptions()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"lr": x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        ref = run_program(prog, torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, ref)
