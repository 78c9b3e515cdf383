"""The browser demo (the page in src/granular_mobile/web_page/, its npm project in web_demo/):
its Node unit tests, `gdq web`'s server, and the page in headless Chromium against the Python
onnxruntime backend (same bit level on every tile, PSNR >= 50 dB; alpha exact), plus its
messages for bad inputs and models.

The browser tests need Debian's chromium and `npm ci --prefix web_demo` (.ci/run installs
both); without them they skip, with the reason."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT

WEB = ROOT / "web_demo"
SAMPLE = ROOT / "src" / "granular_mobile" / "assets" / "sample.png"
EXPORT = ROOT / "src" / "granular_mobile" / "assets" / "export"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).is_file()), None)
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(NODE is None, reason="needs Node.js >= 18 (apt-get install nodejs)")
needs_browser = pytest.mark.skipif(
    NODE is None or CHROMIUM is None or not (WEB / "node_modules" / "playwright-core").is_dir()
    or not (WEB / "node_modules" / "onnxruntime-web").is_dir(),
    reason="needs node, Debian's chromium and web_demo/node_modules (apt-get install chromium nodejs npm; "
           "npm ci --prefix web_demo)")


@needs_node
def test_node_unit_tests():
    """Tiling / stitching against the Python golden vectors, PNG and the alpha resize against OpenCV."""
    r = subprocess.run([NODE, "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout


def test_web_golden_vectors_are_current(tmp_path):
    sys.path.insert(0, str(WEB / "test"))
    try:
        import make_golden
    finally:
        sys.path.pop(0)
    make_golden.write(tmp_path)
    assert json.loads((tmp_path / "resize.json").read_text()) == json.loads((WEB / "test" / "golden" / "resize.json").read_text())


def test_gdq_web_serves_page_model_and_isolation_headers(tmp_path):
    from granular_mobile.web import server

    root = tmp_path / "web"  # a stand-in page and onnxruntime-web (no npm needed)
    (root / "src").mkdir(parents=True)
    (root / "index.html").write_text("<html></html>")
    (root / "src" / "app.js").write_text("//")
    (root / "secret.txt").write_text("no")
    ort = tmp_path / "npm" / "node_modules" / "onnxruntime-web" / "dist"
    ort.mkdir(parents=True)
    (ort / "ort.wasm.min.mjs").write_text("//")
    (ort / "x.wasm").write_bytes(b"\0asm")
    srv = server(EXPORT, 0, page=root, ort=ort)
    assert srv.server_address[0] == "127.0.0.1"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/"
    try:
        for path, ctype in [("", "text/html"), ("src/app.js", "text/javascript"), ("ort/x.wasm", "application/wasm"),
                            ("model/manifest.json", "application/json"), ("model/sr_a4.onnx", "application/octet-stream")]:
            with urllib.request.urlopen(base + path) as r:
                assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                assert r.headers["Content-Type"].startswith(ctype), path
        assert urllib.request.urlopen(base + "model/manifest.json").read() == (EXPORT / "manifest.json").read_bytes()
        for path in ("secret.txt", "model/../../etc/passwd", "src/%2e%2e/secret.txt", "node_modules/x"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path)
            assert e.value.code == 404, path
    finally:
        srv.shutdown()
        srv.server_close()


def test_gdq_web_refuses_missing_pieces(tmp_path, monkeypatch, gdq_here):
    import granular_mobile.web as web
    from granular_mobile.errors import GdqError
    from granular_mobile.web import server

    with pytest.raises(GdqError, match="page is not at"):
        server(EXPORT, 0, page=tmp_path)
    (tmp_path / "index.html").write_text("")
    with pytest.raises(GdqError, match="``ort`` .*no onnxruntime-web there"):
        server(EXPORT, 0, page=tmp_path, ort=tmp_path / "nothing")
    # neither a checkout's node_modules nor the cache's: the npm command that installs it
    monkeypatch.setattr(web, "CHECKOUT_WEB", tmp_path / "no_checkout")
    monkeypatch.setenv("GDQ_WEB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(GdqError, match=f"npm install --prefix {tmp_path / 'cache'} onnxruntime-web@{web.ORT_WEB_VERSION}"):
        server(EXPORT, 0, page=tmp_path)
    ort = tmp_path / "cache" / "node_modules" / "onnxruntime-web" / "dist"  # as that command puts it
    ort.mkdir(parents=True)
    (ort / "ort.wasm.min.mjs").write_text("")
    assert web.find_ort() == ort
    with pytest.raises(GdqError, match="manifest.json"):
        server(tmp_path, 0, page=tmp_path)
    # an export without the ONNX graphs the page runs (a --target tflite export)
    man = json.loads((EXPORT / "manifest.json").read_text())
    del man["targets"]["onnx"]
    tfl = tmp_path / "tflite_only"
    tfl.mkdir()
    (tfl / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(GdqError, match="has no onnx export"):
        server(tfl, 0, page=tmp_path)
    # and through the CLI: one line, nothing served
    r = gdq_here("web", "--model", tfl, "--port", "0")
    assert r.returncode == 1 and "has no onnx export" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_page_ships_with_the_package_and_pins_the_npm_version():
    """An installed package serves the page from package data; the onnxruntime-web version its
    error names is the one the checkout's npm project pins."""
    import tomllib

    import granular_mobile.web as web

    for f in ("index.html", "style.css", "src/app.js", "src/pipeline.js"):
        assert (web.PAGE / f).is_file(), f
    assert web.PAGE.parent == Path(web.__file__).resolve().parent
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["granular_mobile"]
    assert {"web_page/*", "web_page/src/*"} <= set(data)
    assert json.loads((WEB / "package.json").read_text())["dependencies"]["onnxruntime-web"] == web.ORT_WEB_VERSION


# ---- the page in headless Chromium -------------------------------------------------------

PY_REF = """
import json, sys
from granular_mobile.imageio import read_image, write_rgb
from granular_mobile.runtime import Upscaler
out = {}
for src, dst, bits, precision in json.loads(sys.argv[1]):
    sr, rep = Upscaler.load("default", backend="onnxruntime", threads=1, bits=bits, precision=precision)(read_image(src))
    write_rgb(dst, sr)
    out[dst] = rep.to_dict()
print(json.dumps(out))
"""


def headless(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, str(WEB / "upscale_headless.mjs"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def test_images(tmp_path_factory) -> dict[str, Path]:
    """The sample, a grey crop (1 channel) and an RGBA crop whose alpha has 0, 255 and ramps."""
    d = tmp_path_factory.mktemp("web_imgs")
    bgr = cv2.imread(str(SAMPLE))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[30:100, 20:120]  # 70 x 100: 2 tiles
    cv2.imwrite(str(d / "grey.png"), grey)
    crop = bgr[40:130, 100:190]  # 90 x 90: 1 tile, smaller than a tile (reflect padding)
    yy, xx = np.mgrid[:90, :90]
    alpha = np.clip((xx * 4 - 60), 0, 255).astype(np.uint8)
    alpha[:10] = 0
    alpha[70:, :30] = 128
    cv2.imwrite(str(d / "rgba.png"), np.dstack([crop, alpha]))
    return {"sample": SAMPLE, "grey": d / "grey.png", "rgba": d / "rgba.png"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 999.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.slow
@needs_browser
@pytest.mark.parametrize("name,bits,precision", [("sample", "auto", "int8"), ("grey", "auto", "int8"),
                                                  ("rgba", "8", "int8"), ("grey", "auto", "fp32")])
def test_browser_equals_python_onnxruntime(test_images, tmp_path, name, bits, precision):
    src = test_images[name]
    py_png, web_png, stats = tmp_path / "py.png", tmp_path / "web.png", tmp_path / "web.json"
    r = subprocess.run([sys.executable, "-c", PY_REF, json.dumps([[str(src), str(py_png), bits, precision]])],
                       capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])[str(py_png)]
    h = headless(src, web_png, "--bits", bits, "--precision", precision, "--stats", stats)
    assert h.returncode == 0, h.stdout + h.stderr[-3000:]
    web = json.loads(stats.read_text())
    # the fields of gdq run --stats, with the same plan and the same bit level on every tile
    for k in ("tiles", "tiles_per_bit", "fab", "precision", "bits_mode", "tile", "overlap", "merge", "plan"):
        assert web[k] == ref[k], k
    assert web["tile_bits"] == ref["tile_bits"]
    assert set(web["timings_s"]) == {"controller", "sr", "stitch"} and web["model"] and web["input"] and web["output"]
    a, b = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (py_png, web_png))
    assert a.shape == b.shape  # same layout: grey stays 1 channel, RGBA keeps alpha
    if a.ndim == 3 and a.shape[2] == 4:
        assert np.array_equal(a[..., 3], b[..., 3])  # alpha: OpenCV's bicubic, reproduced exactly
    assert psnr(a, b) >= 50.0, psnr(a, b)


def _bad(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "junk.png").write_bytes(b"this is not an image")
    (tmp / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(tmp / "deep.png"), np.zeros((8, 8, 3), np.uint16))
    cv2.imwrite(str(tmp / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    # a 30000 x 30000 PNG header (a 3.6 GP result): refused from its header, before decoding
    small = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    huge = bytearray(small)
    huge[16:24] = (30000).to_bytes(4, "big") * 2
    (tmp / "huge.png").write_bytes(bytes(huge))
    return {"junk": (tmp / "junk.png", "cannot decode"), "empty": (tmp / "empty.jpg", "is empty"),
            "deep": (tmp / "deep.png", "16-bit PNG"), "dot": (tmp / "dot.png", "too small"),
            "huge": (tmp / "huge.png", "too large for this browser")}


@pytest.mark.slow
@needs_browser
def test_browser_bad_inputs_get_a_message(tmp_path):
    for name, (path, msg) in _bad(tmp_path).items():
        h = headless(path, tmp_path / "out.png")
        assert h.returncode == 1 and msg in h.stderr, (name, h.stdout, h.stderr[-2000:])
        assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
@needs_browser
def test_browser_refuses_models_it_does_not_understand(tmp_path):
    m = json.loads((EXPORT / "manifest.json").read_text())
    cases = {"schema": ({**m, "schema_version": 2}, "schema_version 2 is not supported"),
             "no_onnx": ({**m, "targets": {"tflite": m["targets"]["tflite"]}}, "has no onnx export")}
    for name, (man, msg) in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps(man))
        h = headless(SAMPLE, tmp_path / "out.png", "--model", d)
        assert h.returncode == 1 and msg in h.stderr, (name, h.stderr[-2000:])
    d = tmp_path / "tampered"  # a graph that does not match its sha256
    shutil.copytree(EXPORT, d, ignore=shutil.ignore_patterns("*.tflite"))
    with open(d / "sr_a5.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    h = headless(SAMPLE, tmp_path / "out.png", "--model", d)
    assert h.returncode == 1 and "'sr_a5.onnx' does not match the sha256" in h.stderr, h.stderr[-2000:]


@pytest.mark.slow
@needs_browser
def test_gdq_web_page_upscales_in_chromium_at_a_phone_viewport(tmp_path):
    """`gdq web` (the CLI, port 0) serves a page that upscales the sample in Chromium at a
    phone's viewport, cross-origin isolated; its screenshot is the finished page (the README's
    are made the same way)."""
    import os
    import signal

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl+C's signal as a terminal sends it: a shell's background job (pytest started with &,
    # nohup) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt
    p = subprocess.Popen([sys.executable, "-m", "granular_mobile.cli", "web", "--port", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, line + p.stderr.read() if p.poll() is not None else line
        url = line[line.index("http://"):].split()[0]
        shot, stats = tmp_path / "phone.png", tmp_path / "s.json"
        h = headless(SAMPLE, tmp_path / "out.png", "--url", url, "--threads", "2", "--bits", "4", "--viewport", "390x844",
                     "--screenshot", shot, "--stats", stats)
        assert h.returncode == 0, h.stderr[-3000:]
        st = json.loads(stats.read_text())
        assert st["crossOriginIsolated"] is True and st["threads"] == 2 and st["tiles_per_bit"] == {"4": 6}
        img = cv2.imread(str(shot))
        assert img.shape[1] == 390 and img.shape[0] > 844  # the full page, no horizontal overflow
    finally:
        p.send_signal(signal.SIGINT)
        # Ctrl+C ends it within the server's 0.5 s poll; a loaded CI machine (a training job
        # beside it) once took over 10 s to finish the interpreter's exit
        p.wait(timeout=60)


@pytest.mark.slow
@needs_browser
def test_browser_spends_the_budget_as_python(tiny_timed_export, tmp_path):
    """An export with exit levels and a level gate: the page reads its levels and gate from the
    manifest, scores every tile, allocates a budget (not the manifest's 0.8, and off the slider's
    0.05 grid from its minimum) as the Python runtime does (each tile at the same level as in
    Python), and runs each tile on its level's graph (PSNR >= 50 dB against Python)."""
    import os

    from granular_mobile.imageio import write_rgb
    from test_routing import mixed_image

    exp, _ = tiny_timed_export
    src = tmp_path / "mixed.png"
    write_rgb(src, mixed_image())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref_py = ("import json, sys\nfrom granular_mobile.imageio import read_image, write_rgb\n"
              "from granular_mobile.runtime import Upscaler\n"
              "sr, rep = Upscaler.load(sys.argv[1], backend='onnxruntime', threads=1, budget=0.87)(read_image(sys.argv[2]))\n"
              "write_rgb(sys.argv[3], sr)\nprint(json.dumps(rep.to_dict()))")
    r = subprocess.run([sys.executable, "-c", ref_py, str(exp), str(src), str(tmp_path / "py.png")], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(set(ref["tile_levels"])) >= 2, ref["tiles_per_level"]
    h = headless(src, tmp_path / "web.png", "--model", exp, "--budget", "0.87", "--stats", tmp_path / "web.json")
    assert h.returncode == 0, h.stdout + h.stderr[-3000:]
    web = json.loads((tmp_path / "web.json").read_text())
    for k in ("tiles", "tiles_per_level", "tiles_per_bit", "fab", "budget", "plan", "tile_bits"):
        assert web[k] == ref[k], k
    assert abs(web["cost"] - ref["cost"]) < 1e-9
    a, b = (cv2.imread(str(p)) for p in (tmp_path / "py.png", tmp_path / "web.png"))
    assert psnr(a, b) >= 50.0, psnr(a, b)
