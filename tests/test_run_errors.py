"""gdq run's failure modes (issue 14): every check that can fail does so before any tile runs,
in one line; batches go on past a bad input; EXIF orientation and grey+alpha on read; plain
(markup-free) messages and install hints; plus a property test over random inputs.

The CLI cases run in-process in one driver subprocess per group (fast: one interpreter start),
each through ``cli.main`` with stdout / stderr captured."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from granular_mobile.errors import ConfigError, GdqWarning, ImageError, ModelNotFoundError, OutputError
from granular_mobile.imageio import check_output, exif_orientation, read_image, write_rgb
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.backends import check_threads, create_backend, usable_cores

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

DRIVER = r'''
import contextlib, io, json, sys, traceback
from granular_mobile import cli
from granular_mobile.runtime.upscaler import Upscaler

if NO_TILES:  # a check that comes after the work would show up as this traceback
    def _no_tiles(*a, **k):
        raise AssertionError("a tile ran before the checks failed")
    Upscaler._rgb = _no_tiles
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["gdq", *argv]
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            rc = 99
            err.write(traceback.format_exc())
    results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
'''


def gdq_many(cases: list[list], cwd: Path, no_tiles: bool = False, block: tuple[str, ...] = ()) -> list[dict]:
    """Run ``gdq`` argvs in one fresh interpreter; ``block``: modules made unimportable (a
    runtime-only install)."""
    code = f"import sys\nfor m in {list(block)!r}:\n    sys.modules[m] = None\nNO_TILES = {no_tiles}\n" + DRIVER
    r = subprocess.run([sys.executable, "-c", code, json.dumps([[str(a) for a in c] for c in cases])],
                       capture_output=True, text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_one_line_error(res: dict, needle: str) -> None:
    assert res["rc"] == 1, res
    assert "Traceback" not in res["err"], res["err"]
    assert len(lines(res["err"])) == 1 and res["err"].startswith("error: "), res["err"]
    assert needle in res["err"], res["err"]


def leftovers(root: Path) -> list[Path]:
    """Temp files of atomic writes and write probes: none may survive a run."""
    return [p for p in root.rglob("*") if p.name.startswith(".gdq-probe") or p.name.endswith(".tmp")]


def png(path: Path, pixels: np.ndarray, colour_type: int, exif: bytes | None = None) -> None:
    """A PNG written by hand: OpenCV writes no grey+alpha (colour type 4) and no eXIf chunk."""
    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
                     + (chunk(b"eXIf", exif) if exif else b"") + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def tiff_orientation(o: int, endian: str = ">") -> bytes:
    """A minimal TIFF/EXIF block holding one tag, the orientation."""
    mark = b"MM" if endian == ">" else b"II"
    return (mark + struct.pack(endian + "HI", 42, 8) + struct.pack(endian + "H", 1)
            + struct.pack(endian + "HHIHH", 0x0112, 3, 1, o, 0) + struct.pack(endian + "I", 0))


def jpeg_with_orientation(path: Path, rgb: np.ndarray, o: int, endian: str = ">") -> None:
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    app1 = b"Exif\x00\x00" + tiff_orientation(o, endian)
    b = buf.tobytes()
    path.write_bytes(b[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + b[2:])


IMG = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ws(tiny_export, tmp_path_factory) -> Path:
    """A working folder: the tiny export (plus a tampered copy and one missing a graph), and images."""
    exp, ck = tiny_export
    d = tmp_path_factory.mktemp("ws")
    shutil.copytree(exp, d / "exp")
    shutil.copytree(exp, d / "tampered")
    p = d / "tampered" / "sr_a8.onnx"
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    shutil.copytree(exp, d / "missing")
    (d / "missing" / "sr_a6.onnx").unlink()
    shutil.copy(ck / "q.pt", d / "q.pt")
    for f in ("good.png", "a/x.png", "b/x.png", "c/x.png", "c/x_x2.png", "existing.png", "bm_exists.png", "b[1].png"):
        (d / f).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(d / f), IMG)
    (d / "s_exists.json").write_text("{}")
    (d / "folder").mkdir()
    (d / "afile").write_text("a file, not a folder")
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    return d


PREFLIGHT = {  # id: (argv after `run`, the message's needle)
    "unknown extension": (["good.png", "-o", "o.xyz"], "'.xyz' is not an image format"),
    "no extension": (["good.png", "-o", "o"], "no image extension"),
    "parent is a file": (["good.png", "-o", "afile/o.png"], "'afile' is a file, not a folder"),
    "read-only folder": (["good.png", "-o", "ro/o.png"], "cannot write in folder 'ro'"),
    "read-only mount": (["good.png", "-o", "/proc/gdq_out.png"], "cannot write in folder '/proc'"),
    "--stats is a folder": (["good.png", "-o", "o.png", "--stats", "folder"], "--stats 'folder' is a folder"),
    "--stats under a file": (["good.png", "-o", "o.png", "--stats", "afile/s.json"], "'afile' is a file"),
    "--bitmap extension": (["good.png", "-o", "o.png", "--bitmap", "b.txt"], "--bitmap 'b.txt': '.txt' is not an image"),
    "output exists": (["good.png", "-o", "existing.png"], "use --force"),
    "--stats exists": (["good.png", "-o", "o.png", "--stats", "s_exists.json"], "--stats 's_exists.json' exists; use --force"),
    "--bitmap exists": (["good.png", "-o", "o.png", "--bitmap", "bm_exists.png"], "--bitmap 'bm_exists.png' exists; use --force"),
    "batch name clash": (["a", "b", "-o", "out/"], "would both be 'out/x_x2.png'"),
    "batch output replaces an input": (["c", "-o", "c", "--force"], "would both be 'c/x_x2.png'"),
    "--stats is the output": (["good.png", "-o", "p.png", "--stats", "p.png"], "would both be 'p.png'"),
    "--bitmap with a batch": (["a", "good.png", "-o", "out/", "--bitmap", "bm.png"], "--bitmap takes one input"),
    "batch into an image name": (["a", "good.png", "-o", "out/single.png"], "names an image file; give a folder"),
    "tampered graph never used": (["good.png", "-o", "o.png", "-m", "tampered", "--bits", "4"], "sha256"),
    "deleted graph": (["good.png", "-o", "o.png", "-m", "missing"], "sr_a6.onnx' is missing"),
    "threads negative (onnxruntime)": (["good.png", "-o", "o.png", "--threads", "-1"], "--threads -1 is invalid"),
    "threads negative (tflite)": (["good.png", "-o", "o.png", "--threads", "-1", "--backend", "tflite"], "--threads -1 is invalid"),
    "tile too small": (["good.png", "-o", "o.png", "-m", "q.pt", "--backend", "torch", "--tile", "4"], "--tile 4 is too small"),
    "tile of another export": (["good.png", "-o", "o.png", "--tile", "64"], "static tile of 32"),
    "bits with fp32": (["good.png", "-o", "o.png", "--precision", "fp32", "--bits", "5"], "give one of them"),
    "export folder on torch": (["good.png", "-o", "o.png", "--backend", "torch"], "export folder"),
    "missing input with brackets": (["nope[1].png", "-o", "o.png"], "input 'nope[1].png' does not exist"),
}


@pytest.fixture(scope="module")
def preflight(ws) -> dict[str, dict]:
    before = {p for p in ws.rglob("*")}
    cases = []
    for argv, _ in PREFLIGHT.values():
        model = [] if ("-m" in argv or "--backend" in argv and "torch" in argv) else ["-m", "exp"]
        cases.append(["run", *argv, *model])
    # the export folder on torch: -m exp with --backend torch
    cases[list(PREFLIGHT).index("export folder on torch")] += ["-m", "exp"]
    res = dict(zip(PREFLIGHT, gdq_many(cases, ws, no_tiles=True), strict=True))
    res["_new_files"] = sorted(str(p) for p in set(ws.rglob("*")) - before)
    return res


@pytest.mark.parametrize("case", list(PREFLIGHT))
def test_preflight_one_line_before_any_tile(preflight, case):
    if case == "read-only folder" and IS_ROOT:
        pytest.skip("root writes into a 0o555 folder; the read-only mount case covers root")
    if case == "read-only mount" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    assert_one_line_error(preflight[case], PREFLIGHT[case][1])


def test_preflight_leaves_nothing(preflight):
    assert preflight["_new_files"] == []


def huge_header_png(path: Path, width: int = 100000, height: int = 100000) -> None:
    """A small valid PNG whose IHDR claims ``width`` x ``height`` (CRC fixed): OpenCV refuses it."""
    ok, buf = cv2.imencode(".png", IMG[:4, :4])
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def test_batch_goes_on_past_bad_inputs(ws, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("1_good.png", "3_good.png", "5[x].png"):
        cv2.imwrite(str(src / name), IMG)
    (src / "2_bad.png").write_bytes(b"not an image")
    cv2.imwrite(str(src / "4_tiny.png"), IMG[:1, :1])
    huge_header_png(src / "4b_huge.png")
    out, stats = tmp_path / "out", tmp_path / "s.json"
    r, = gdq_many([["run", src, "-o", out, "-m", "exp", "--stats", stats]], ws)
    assert r["rc"] == 1 and "Traceback" not in r["err"]
    failed = lines(r["err"])
    assert len(failed) == 3, r["err"]
    assert "2_bad.png" in failed[0] and "cannot decode" in failed[0]
    assert "4_tiny.png" in failed[1] and "too small" in failed[1]
    assert "4b_huge.png" in failed[2] and "header claims more pixels than OpenCV decodes" in failed[2]
    assert sorted(p.name for p in out.iterdir()) == ["1_good_x2.png", "3_good_x2.png", "5[x]_x2.png"]
    assert f"{src / '5[x].png'} -> {out / '5[x]_x2.png'}" in r["out"]  # brackets printed as they are
    assert lines(r["out"])[-1] == "3 done, 3 failed, 0 skipped"
    s = json.loads(stats.read_text())
    assert s["summary"] == {"done": 3, "failed": 3, "skipped": 0} and len(s["images"]) == 3
    assert [f["input"] for f in s["failed"]] == [str(src / "2_bad.png"), str(src / "4_tiny.png"), str(src / "4b_huge.png")]
    assert all(f["error"] for f in s["failed"])
    assert leftovers(tmp_path) == []


def test_run_cases_with_tiles(ws, tmp_path):
    """Thread clamping, repeated inputs, file names with brackets, EXIF, grey+alpha, float."""
    jpeg_with_orientation(tmp_path / "phone.jpg", IMG, 6)
    grey = (np.random.default_rng(2).random((30, 44)) * 255).astype(np.uint8)
    alpha = np.linspace(0, 255, 30 * 44).reshape(30, 44).astype(np.uint8)
    png(tmp_path / "ga.png", np.stack([grey, alpha], axis=2), colour_type=4)
    cv2.imwrite(str(tmp_path / "float.tif"), IMG.astype(np.float32) / 255)
    cv2.imwrite(str(tmp_path / "b[1].png"), IMG)
    t = tmp_path
    res = gdq_many([
        ["run", ws / "good.png", ws / "good.png", "-o", f"{t / 'rep'}/", "-m", "exp"],
        ["run", t / "b[1].png", "-o", t / "o[2].png", "-m", "exp"],
        ["run", t / "phone.jpg", "-o", t / "phone.png", "-m", "exp"],
        ["run", t / "ga.png", "-o", t / "ga_x2.png", "-m", "exp"],
        ["run", t / "float.tif", "-o", t / "f.png", "-m", "exp"],
    ], ws)
    # a process of its own: onnxruntime keeps one thread count per process
    r, = gdq_many([["run", ws / "good.png", "-o", t / "th.png", "-m", "exp", "--threads", "1000"]], ws)
    assert r["rc"] == 0 and lines(r["err"]) == [f"warning: --threads 1000 is more than the {usable_cores()} cores here; "
                                                f"using {usable_cores()}"], r["err"]
    res.insert(0, r)
    assert res[1]["rc"] == 0 and lines(res[1]["out"])[-1] == "1 done, 0 failed, 1 skipped", res[1]
    assert res[2]["rc"] == 0 and f"{t / 'b[1].png'} -> {t / 'o[2].png'}" in res[2]["out"]
    assert res[3]["rc"] == 0 and cv2.imread(str(t / "phone.png")).shape == (100, 80, 3)  # upright: 50 x 40 -> x2
    assert res[4]["rc"] == 0, res[4]["err"]
    ga = cv2.imread(str(t / "ga_x2.png"), cv2.IMREAD_UNCHANGED)
    assert ga.shape == (60, 88, 4)
    assert (ga[..., 0] == ga[..., 1]).all() and (ga[..., 1] == ga[..., 2]).all()  # no colour fringes
    assert np.abs(ga[::2, ::2, 3].astype(int) - alpha).max() <= 8  # alpha kept (upscaled)
    assert_one_line_error(res[5], "float32")
    assert "8-bit" in res[5]["err"] and not (t / "f.png").exists()
    assert leftovers(tmp_path) == []


def test_runtime_only_install(ws):
    """Without torch (or LiteRT): one line naming the extra, printed as it is (no rich markup);
    what needs no torch (listing the models, running an export) works."""
    res = gdq_many([["export", "-o", "x"], ["eval"], ["bench"], ["train", "-o", "x"],
                    ["run", "good.png", "-o", "no_torch.png", "-m", "exp"], ["models"]], ws, block=("torch",))
    for r, extra in zip(res, ["export", "torch", "torch", "torch"], strict=False):
        assert_one_line_error(r, f"pip install 'granular-mobile[{extra}]'")
    assert res[4]["rc"] == 0 and (ws / "no_torch.png").is_file()  # the runtime needs no torch
    assert res[5]["rc"] == 0, res[5]["err"]
    assert re.findall(r"^│ (\w+)", res[5]["out"], re.M) == [
        "edsr", "edsr_gdq", "srresnet", "srresnet_gdq"], res[5]["out"]
    r, = gdq_many([["run", "good.png", "-o", "o.png", "-m", "exp", "--backend", "tflite"]], ws, block=("ai_edge_litert",))
    assert_one_line_error(r, "pip install 'granular-mobile[tflite]'")


def test_help_shows_flags_as_switches_and_models_go_to_stdout(ws):
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "run", "-h"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "--force" in r.stdout
    assert "<bool>" not in r.stdout
    force = next(ln for ln in r.stdout.splitlines() if "--force" in ln)
    assert "<" not in force, force
    res = gdq_many([["models"]], ws)
    assert res[0]["rc"] == 0 and "srresnet_gdq" in res[0]["out"] and "srresnet_gdq" not in res[0]["err"]


# ---- library level -----------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("endian", [">", "<"])
def test_exif_orientation_as_opencv_shows_it(tmp_path, orientation, endian):
    img = (np.random.default_rng(orientation).random((24, 36, 3)) * 255).astype(np.uint8)
    p = tmp_path / "o.jpg"
    jpeg_with_orientation(p, img, orientation, endian)
    assert exif_orientation(p.read_bytes()) == orientation
    want = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1]  # OpenCV applies the orientation on this path
    np.testing.assert_array_equal(read_image(p), want)


def test_exif_orientation_of_a_png_with_alpha(tmp_path):
    rgba = (np.random.default_rng(3).random((10, 16, 4)) * 255).astype(np.uint8)
    png(tmp_path / "o.png", rgba, colour_type=6, exif=tiff_orientation(6))
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), np.rot90(rgba, -1))  # 90 degrees clockwise


@pytest.mark.parametrize("layout", ["rgba", "grey+alpha", "rgb"])
def test_grey_images_come_out_grey(tiny_export, tmp_path, layout):
    exp, _ = tiny_export
    g = (np.random.default_rng(4).random((30, 40)) * 255).astype(np.uint8)
    a = np.full_like(g, 200)
    img = {"rgba": np.stack([g, g, g, a], 2), "grey+alpha": np.stack([g, a], 2), "rgb": np.stack([g, g, g], 2)}[layout]
    sr, _ = Upscaler.load(str(exp), backend="onnxruntime")(img)
    assert sr.shape == (60, 80, img.shape[2])
    grey_sr, _ = Upscaler.load(str(exp), backend="onnxruntime")(g)
    np.testing.assert_array_equal(sr[..., 0], grey_sr)  # the grey path: one image, R = G = B
    if img.shape[2] >= 3:
        assert (sr[..., 0] == sr[..., 1]).all() and (sr[..., 1] == sr[..., 2]).all()
    # a grey+alpha PNG stays grey+alpha: read as HxWx2 (OpenCV alone gives RGBA), written as
    # colour type 4
    png(tmp_path / "ga.png", np.stack([g, a], 2), colour_type=4)
    np.testing.assert_array_equal(read_image(tmp_path / "ga.png"), np.stack([g, a], 2))
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "run", str(tmp_path / "ga.png"), "-o",
                        str(tmp_path / "ga_x2.png"), "-m", str(exp)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "ga_x2.png").read_bytes()
    assert data[25] == 4  # IHDR colour type: grey+alpha
    out = read_image(tmp_path / "ga_x2.png")
    assert out.shape == (60, 80, 2)
    np.testing.assert_array_equal(out[..., 0], grey_sr)


def test_thread_counts():
    n = usable_cores()
    assert check_threads(0) == 0 and check_threads(n) == n
    with pytest.warns(GdqWarning, match=f"using {n}"):
        assert check_threads(n + 1000) == n
    with pytest.raises(ConfigError, match=r"1\.\."):
        check_threads(-1)


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_every_graph_is_checked_at_load(tiny_export, tmp_path, backend):
    exp, _ = tiny_export
    ext = "onnx" if backend == "onnxruntime" else "tflite"
    bad = tmp_path / "exp"
    shutil.copytree(exp, bad)
    p = bad / f"sr_a8.{ext}"
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConfigError, match="sha256"):  # at load, though --bits 4 never runs sr_a8
        create_backend(backend, str(bad))
    p.unlink()
    with pytest.raises(ModelNotFoundError, match="missing"):
        create_backend(backend, str(bad))
    with pytest.raises(ConfigError, match="threads"):
        create_backend(backend, str(exp), threads=-1)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_rgb(tmp_path / "o.png", IMG)
    assert list(tmp_path.iterdir()) == []


def test_check_output_creates_nothing(tmp_path):
    check_output(tmp_path / "new" / "deeper" / "o.png", "output", force=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="no image extension"):
        check_output(tmp_path / "o", "output", force=False)


# ---- property test -----------------------------------------------------------------------

def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """1x1 .. 3x5000: the extremes often, else small (a few tiles: the test stays fast)."""
    if rng.random() < 0.3:
        return [(1, 1), (3, 5000), (5000, 3), (2, 2), (1, 40)][rng.integers(5)]
    return int(rng.integers(1, 41)), int(rng.integers(1, 300))


def random_array(rng: np.random.Generator) -> np.ndarray:
    """Random sizes, layouts from valid to nonsense, 8-bit mostly."""
    h, w = random_size(rng)
    layout = [(h, w), (h, w, 1), (h, w, 2), (h, w, 3), (h, w, 4), (h, w, 5), (h,), (1, h, w, 3), (0, w, 3)][rng.integers(9)]
    dtype = [np.uint8] * 4 + [np.uint16, np.float32][: 1 + int(rng.integers(2))]
    dt = dtype[rng.integers(len(dtype))]
    return (rng.random(layout) * (255 if dt != np.float32 else 1)).astype(dt)


def test_property_upscaler(tiny_export):
    exp, _ = tiny_export
    up = Upscaler.load(str(exp), backend="onnxruntime")
    rng = np.random.default_rng(14)
    outcomes = []
    extremes = [np.full((3, 5000, 3), 7, np.uint8), np.zeros((5000, 3), np.uint8), np.zeros((1, 1, 3), np.uint8),
                np.zeros((2, 2, 4), np.uint8)]
    for a in extremes + [random_array(rng) for _ in range(30)]:
        try:
            sr, rep = up(a)
        except ImageError as e:
            assert "\n" not in str(e) and str(e)
            outcomes.append("error")
            continue
        outcomes.append(a.shape)
        assert sr.dtype == np.uint8 and sr.shape[:2] == (2 * a.shape[0], 2 * a.shape[1])
        assert sr.ndim == (2 if a.ndim == 2 or a.shape[2] == 1 else 3) and (sr.ndim == 2 or sr.shape[2] == a.shape[2])
        assert rep.tiles == len(rep.tile_bits) > 0
    assert outcomes[:4] == [(3, 5000, 3), (5000, 3), "error", (2, 2, 4)]
    assert "error" in outcomes[4:] and len(set(outcomes[4:])) > 5  # the seed covers both outcomes, and sizes


def test_property_cli(ws, tmp_path):
    """Random bytes, random sizes and channel layouts through `gdq run`: each run is a correct-size
    output or a one-line error, and leaves no file behind when it fails."""
    rng = np.random.default_rng(14)
    src = tmp_path / "in"
    src.mkdir()
    files = []
    for i in range(12):
        kind = rng.integers(3)
        if kind == 0:
            p = src / f"{i}.png"
            p.write_bytes(rng.bytes(int(rng.integers(0, 200))))
        else:  # every layout a file holds: grey, grey with a channel axis, BGR, BGRA; 8 or 16 bits
            h, w = random_size(rng)
            c = [None, 1, 3, 4][rng.integers(4)]
            dt = [np.uint8, np.uint8, np.uint16][rng.integers(3)]
            a = (rng.random((h, w) if c is None else (h, w, c)) * 255).astype(dt)
            p = src / f"{i}.{['png', 'tif'][kind - 1]}"
            assert cv2.imwrite(str(p), a)
        files.append(p)
    out = tmp_path / "out"
    out.mkdir()
    res = gdq_many([["run", f, "-o", out / f"{f.stem}_x2.png", "-m", "exp"] for f in files]
                   + [["run", src, "-o", tmp_path / "batch/", "-m", "exp"]], ws)
    for f, r in zip(files, res, strict=False):  # res ends with the batch run
        o = out / f"{f.stem}_x2.png"
        if r["rc"] == 0:
            lr, sr = cv2.imread(str(f), cv2.IMREAD_UNCHANGED), cv2.imread(str(o), cv2.IMREAD_UNCHANGED)
            assert sr.shape[:2] == (2 * lr.shape[0], 2 * lr.shape[1]), f
        else:
            assert_one_line_error(r, "")
            assert not o.exists()
    batch = res[-1]
    n_ok = sum(r["rc"] == 0 for r in res[:-1])
    assert 0 < n_ok < len(files)  # the seed covers both outcomes
    assert batch["rc"] == (0 if n_ok == len(files) else 1) and "Traceback" not in batch["err"]
    assert len(lines(batch["err"])) == len(files) - n_ok
    assert lines(batch["out"])[-1] == f"{n_ok} done, {len(files) - n_ok} failed, 0 skipped"
    assert len(list((tmp_path / "batch").iterdir())) == n_ok
    assert leftovers(tmp_path) == []


def test_exif_orientation_of_a_webp():
    ok, buf = cv2.imencode(".webp", IMG)
    riff = buf.tobytes()
    blob = b"Exif\x00\x00" + tiff_orientation(8, "<")
    chunk = b"EXIF" + struct.pack("<I", len(blob)) + blob + b"\x00" * (len(blob) & 1)
    body = riff[8:] + chunk
    assert exif_orientation(b"RIFF" + struct.pack("<I", len(body)) + body) == 8
    assert exif_orientation(riff) == 1
