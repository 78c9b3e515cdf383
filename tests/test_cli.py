"""The gdq command line: help, one-line errors, run/eval on a tiny model."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from granular_mobile.checkpoint import save_model
from granular_mobile.cli.app import as_flags
from granular_mobile.models import create_model


def gdq(*args, env=None):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "granular_mobile.cli", *map(str, args)], capture_output=True, text=True, env=e)

@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    q = create_model("srresnet_gdq", n_blocks=1, n_feats=8).eval()
    with torch.no_grad():
        q(torch.rand(2, 3, 24, 24), 0)  # initialise quantizers
    save_model(q, d / "q.pt")
    save_model(create_model("srresnet", n_blocks=1, n_feats=8), d / "fp.pt")
    img = (np.random.default_rng(0).random((70, 110, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(d / "in.png"), img)
    return d


def test_help_and_models():
    r = gdq("-h")
    assert r.returncode == 0 and "quantize" in r.stdout and "import-reference" in r.stdout
    r = gdq("models")
    assert r.returncode == 0
    for n in ("srresnet", "srresnet_gdq", "edsr", "edsr_gdq"):
        assert n in r.stdout  # a listing: what a pipe gets


@pytest.mark.parametrize("args, needle", [
    (("eval", "--model", "missing.pt"), "does not exist"),
    (("train", "-o", "x", "--model", "vdsr"), "valid: ['edsr', 'srresnet']"),
    (("train", "-o", "x", "--scale", "3", "--data", "nowhere"), "scale 3 is not supported"),
    (("eval", "--numerics", "int4"), "valid: ['float', 'int8']"),
    (("calibrate", "default", "-o", "x.pt", "--target-fab", "9"), "must be within"),
    (("verify", "-o", "x", "--arch", "riscv"), "valid: ['arm64']"),
    (("verify", "-o", "nowhere"), "no manifest.json"),
    (("quantize", "--init", "default", "-o", "x", "--bits", "4,x"), "--bits '4,x' is not a comma-separated list"),
    (("train", "-o", "x", "--milestones", "100,y"), "--milestones '100,y' is not"),
    (("calibrate", "default", "-o", "x.pt", "--quantiles", "0.3"), "--quantiles '0.3' is not"),
    (("quantize", "-o", "nowhere", "--resume"), "no 'nowhere/last.pt' to resume from"),
])
def test_errors_are_one_line(args, needle, gdq_here, monkeypatch, tmp_path):
    """In process (``gdq_here``: ``cli.main``, what the `gdq` script runs): one line on stderr and
    exit code 1, the exception itself with GDQ_DEBUG=1."""
    from granular_mobile import cli
    from granular_mobile.errors import GdqError

    monkeypatch.chdir(tmp_path)
    r = gdq_here(*args)
    err = r.stderr
    assert r.returncode == 1, err
    assert "Traceback" not in err and needle in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    monkeypatch.setenv("GDQ_DEBUG", "1")
    with pytest.raises(GdqError):
        cli.main()


def test_an_error_is_one_line_from_a_new_process(tmp_path):
    """The `gdq` entry point as a script runs it (GDQ_DEBUG=1's traceback: test_errors_are_one_line;
    a command that needs no torch, so the new process starts in about a second)."""
    r = gdq("run", tmp_path / "missing.png", "-o", tmp_path / "o.png")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "missing.png" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


def test_run_torch_backend(tiny_ckpts, tmp_path, gdq_here):
    out, stats = tmp_path / "o.png", tmp_path / "s.json"
    r = gdq_here("run", tiny_ckpts / "in.png", "-o", out, "-m", tiny_ckpts / "q.pt", "--stats", stats, "--tile", "32",
            "--backend", "torch")
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(out)).shape == (140, 220, 3)
    s = json.loads(stats.read_text())
    assert sum(s["tiles_per_bit"].values()) == s["tiles"] and 4 <= s["fab"] <= 8
    r = gdq_here("run", tiny_ckpts / "in.png", "-o", out, "-m", tiny_ckpts / "q.pt", "--backend", "torch")
    assert r.returncode == 1 and "--force" in r.stderr
    r = gdq_here("run", tiny_ckpts / "in.png", "-o", out, "-m", tiny_ckpts / "q.pt", "--bits", "8", "--force", "--tile", "32",
            "--backend", "torch")
    assert r.returncode == 0, r.stderr
    r = gdq_here("run", tiny_ckpts / "in.png", "-o", out, "-m", tiny_ckpts / "q.pt", "--bits", "7", "--force", "--backend", "torch")
    assert r.returncode == 1 and "valid: auto, 4, 5, 6, 8" in r.stderr


def test_run_bad_images(tiny_ckpts, tmp_path, gdq_here):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = gdq_here("run", bad, "-o", tmp_path / "o.png", "-m", tiny_ckpts / "q.pt", "--backend", "torch")
    assert r.returncode == 1 and "cannot decode" in r.stderr and not (tmp_path / "o.png").exists()
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.zeros((40, 40, 3), np.uint16))
    r = gdq_here("run", deep, "-o", tmp_path / "o.png", "-m", tiny_ckpts / "q.pt", "--backend", "torch")
    assert r.returncode == 1 and "uint16" in r.stderr and "8-bit" in r.stderr
    tiny = tmp_path / "px.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    r = gdq_here("run", tiny, "-o", tmp_path / "o.png", "-m", tiny_ckpts / "q.pt", "--backend", "torch")
    assert r.returncode == 1 and "too small" in r.stderr and not (tmp_path / "o.png").exists()


def test_eval_json(tiny_ckpts, tiny_bench, tmp_path, gdq_here):
    j = tmp_path / "e.json"
    r = gdq_here("eval", "-m", tiny_ckpts / "q.pt", "--fp", tiny_ckpts / "fp.pt", "--data", "Tiny", "--root", tiny_bench,
            "--tile", "32", "--step", "30", "--numerics", "float", "--json", j)
    assert r.returncode == 0, r.stderr
    res = json.loads(j.read_text())["results"]
    assert [x["model"] for x in res] == ["srresnet_gdq float", "srresnet", "bicubic"]
    assert res[0]["fab"] is not None and res[2]["psnr"] > 25
    assert sum(int(v) for v in res[0]["tiles_per_bit"].values()) > 0
    # the export's integer numerics (the default): same tiles and bits, a different (integer-rounded) result
    j8 = tmp_path / "e8.json"
    r = gdq_here("eval", "-m", tiny_ckpts / "q.pt", "--data", "Tiny", "--root", tiny_bench, "--tile", "32", "--step", "30",
            "--no-bicubic", "--json", j8)
    assert r.returncode == 0, r.stderr
    res8 = json.loads(j8.read_text())
    assert res8["numerics"] == "int8" and res8["results"][0]["model"] == "srresnet_gdq int8"
    assert res8["results"][0]["tiles_per_bit"] == res[0]["tiles_per_bit"]
    assert res8["results"][0]["psnr"] != res[0]["psnr"] and abs(res8["results"][0]["psnr"] - res[0]["psnr"]) < 1.0
    # what gdq eval prints is one library call
    from granular_mobile.config import TileConfig
    from granular_mobile.eval.benchmarks import evaluate_benchmarks

    ev = evaluate_benchmarks(str(tiny_ckpts / "q.pt"), ["Tiny"], tiny_bench, tiles=TileConfig(32, 30),
                             fp=str(tiny_ckpts / "fp.pt"), numerics="float")
    assert [r.to_dict() for r in ev.results] == res and ev.scale == 2 and ev.levels == (4, 5, 6, 8)


def test_outputs_respect_umask(tmp_path):
    import stat

    from granular_mobile.imageio import default_mode, write_rgb

    write_rgb(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == default_mode()


def test_progress_lines_where_stderr_is_no_terminal(tiny_export, tmp_path):
    """A script, CI or nohup gets plain progress lines (tiles done / total, elapsed, eta) every
    $GDQ_PROGRESS_INTERVAL seconds instead of a bar that never renders."""
    import os
    import subprocess
    import sys

    import cv2
    import numpy as np

    exp, _ = tiny_export
    cv2.imwrite(str(tmp_path / "in.png"), (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8))
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "run", str(tmp_path / "in.png"), "-o",
                        str(tmp_path / "out.png"), "-m", str(exp)], capture_output=True, text=True,
                       env={**os.environ, "GDQ_PROGRESS_INTERVAL": "0", "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("in.png ")]
    assert len(progress) >= 3, r.stderr
    done = [int(ln.split()[1].split("/")[0]) for ln in progress]
    total = int(progress[-1].split()[1].split("/")[1])
    assert done == sorted(done) and done[-1] == total > 1 and "eta" in progress[-1]


def test_run_refuses_a_huge_output_unless_large(tiny_export, tmp_path, monkeypatch):
    """An input whose output is over MAX_OUTPUT_MP is one line with its tiles and memory before any
    tile runs (a 12000x9000 input started ~17k tiles with no word); --large runs it."""
    import cv2
    import numpy as np
    from typer.testing import CliRunner

    import granular_mobile.cli as cli
    import granular_mobile.runtime.batch as batch

    exp, _ = tiny_export
    cv2.imwrite(str(tmp_path / "big.png"), (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8))
    monkeypatch.setattr(batch, "MAX_OUTPUT_MP", 0.01)  # the 180x140 output stands for a huge one
    r = CliRunner().invoke(cli.app, ["run", str(tmp_path / "big.png"), "-o", str(tmp_path / "o.png"), "-m", str(exp)])
    assert r.exit_code != 0 and not (tmp_path / "o.png").exists()
    msg = str(r.exception)
    assert "is 90x70: its x2 output is 180x140" in msg and "tiles; pass ``large``" in msg and "\n" not in msg
    assert "tiles; pass --large to run it" in as_flags(msg)  # as gdq prints it
    r = CliRunner().invoke(cli.app, ["run", str(tmp_path / "big.png"), "-o", str(tmp_path / "o.png"), "-m", str(exp),
                                     "--large"])
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(tmp_path / "o.png")).shape == (140, 180, 3)


def test_help_prose_is_reflowed_and_examples_kept():
    """Each command's help paragraph is one line (the terminal wraps it), examples keep theirs."""
    from granular_mobile.cli import app

    for cmd in app.registered_commands:
        assert cmd.help, cmd.name
        paras = cmd.help.split("\n\n")
        for p in paras:
            if not p.startswith("Example"):
                assert "\n" not in p, (cmd.name, p)
        ex = [p for p in paras if p.startswith("Example")]
        assert ex and all("\n" in p or p.startswith("Example: ") for p in ex), (cmd.name, ex)


@pytest.mark.slow
def test_export_tflite_through_the_cli_then_run_it(tiny_ckpts, tmp_path):
    """`gdq export --target tflite` from the command line, then `gdq run` on its graphs: the
    pixels are the model's (PyTorch with the export's integer numerics, >= 45 dB); a second
    export adding onnx keeps the tflite target (and its files) in the manifest."""
    from granular_mobile.checkpoint import load_model
    from granular_mobile.imageio import read_image
    from granular_mobile.runtime import Upscaler
    from granular_mobile.runtime.backends.torch import TorchBackend

    exp, out = tmp_path / "exp", tmp_path / "o.png"
    r = gdq("export", "-m", tiny_ckpts / "q.pt", "--fp", tiny_ckpts / "fp.pt", "-o", exp, "--target", "tflite", "--tile", "32")
    assert r.returncode == 0, r.stderr[-2000:]
    assert set(json.loads((exp / "manifest.json").read_text())["targets"]) == {"tflite"}
    r = gdq("run", tiny_ckpts / "in.png", "-o", out, "-m", exp, "--backend", "tflite", "--bits", "8")
    assert r.returncode == 0, r.stderr[-2000:]
    got = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB).astype(np.float64)
    up = Upscaler.load(str(exp), backend="tflite", bits=8)
    ref, _ = Upscaler(TorchBackend.from_models(load_model(str(tiny_ckpts / "q.pt")), tile=32, numerics="int8"), bits=8,
                      overlap=up.overlap)(read_image(tiny_ckpts / "in.png"))
    mse = np.mean((got - ref) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 45.0, mse
    r = gdq("export", "-m", tiny_ckpts / "q.pt", "--fp", tiny_ckpts / "fp.pt", "-o", exp, "--target", "onnx", "--tile", "32")
    assert r.returncode == 0, r.stderr[-2000:]
    man = json.loads((exp / "manifest.json").read_text())
    assert set(man["targets"]) == {"onnx", "tflite"} and all((exp / f).is_file() for f in man["files"])


def _library_parameters() -> dict[str, set[str]]:
    """Each parameter the library's messages name (``name``), with the files that name it: every
    string constant of the package outside ``cli/`` (f-strings' literal parts too), docstrings
    left out."""
    import ast
    from pathlib import Path

    from granular_mobile.errors import PARAMETER

    pkg = Path(__file__).resolve().parents[1] / "src" / "granular_mobile"
    found: dict[str, set[str]] = {}
    for f in pkg.rglob("*.py"):
        if "cli" in f.relative_to(pkg).parts:
            continue
        tree = ast.parse(f.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                for m in PARAMETER.finditer(node.value):
                    found.setdefault(m.group(1), set()).add(f.name)
    return found


def test_every_parameter_a_library_message_names_is_a_flag_of_gdq():
    """Library messages name parameters (``fp_layers``); gdq prints each as a flag (--fp-layers)
    that must exist, or a user is told to pass an option no command has."""
    import typer.main

    import granular_mobile.cli as cli

    flags: set[str] = set()
    for cmd in typer.main.get_command(cli.app).commands.values():
        for p in cmd.params:
            if p.param_type_name == "option":  # (typer vendors its click: no class to import)
                flags |= {o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    params = _library_parameters()
    assert {"budget", "fp_layers", "bitmap", "verify_root", "tile"} <= set(params)  # the scan found them
    unknown = {name: sorted(files) for name, files in params.items() if as_flags(f"``{name}``") not in flags}
    assert not unknown, f"no gdq flag for {unknown}: add it to cli.app.FLAG_OF"
    assert as_flags("``fp_layers`` 'x' is unknown; drop ``verify_root``") == "--fp-layers 'x' is unknown; drop --verify-data"
