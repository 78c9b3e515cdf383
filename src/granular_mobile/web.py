"""``gdq web``: serve the browser demo and an export folder on localhost.

Paths: ``/`` the page (``web_page/``: index.html, style.css, src/; package data, so an
installed package serves it), ``/ort/`` onnxruntime-web's files (``find_ort``: a checkout's
``npm ci --prefix web_demo``, or ``npm install`` into a cache folder), ``/model/`` the export
folder (manifest.json and the graphs). Every response carries the
headers of cross-origin isolation (COOP same-origin, COEP require-corp), which multithreaded
WebAssembly (SharedArrayBuffer) needs. Binds 127.0.0.1 only. Standard library; no torch.
"""
from __future__ import annotations

import http.server
import mimetypes
import os
import posixpath
import urllib.parse
from pathlib import Path

from .errors import ConfigError, ModelNotFoundError

#: the page
PAGE = Path(__file__).resolve().parent / "web_page"
#: the onnxruntime-web the page is written against (web_demo/package.json pins the same)
ORT_WEB_VERSION = "1.30.0"
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
#: a checkout's npm project (its tests, headless script and node_modules)
CHECKOUT_WEB = Path(__file__).resolve().parents[2] / "web_demo"
#: the page's files served at / (nothing else of its folder)
PAGE_FILES = ("index.html", "style.css", "src/")
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".onnx": "application/octet-stream", ".css": "text/css", ".html": "text/html; charset=utf-8"}


def ort_cache() -> Path:
    """Where ``npm install`` puts onnxruntime-web for an installed package (GDQ_WEB_CACHE moves it)."""
    return Path(os.environ.get("GDQ_WEB_CACHE", "~/.cache/granular-mobile/web")).expanduser()


def find_ort(ort: Path | None = None) -> Path | None:
    """onnxruntime-web's ``dist`` folder: ``ort`` if given, else a checkout's, else the cache's."""
    cands = [ort] if ort is not None else [CHECKOUT_WEB / ORT_DIST, ort_cache() / ORT_DIST]
    return next((c for c in cands if (c / "ort.wasm.min.mjs").is_file()), None)


def resolve(page: Path, model_dir: Path, ort_dir: Path, url_path: str) -> Path | None:
    """The file a URL path maps to, or None (outside the served folders, or missing)."""
    p = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(url_path).path))
    parts = [s for s in p.split("/") if s]
    if any(s in ("..", ".") or s.startswith(".") for s in parts):
        return None
    rel = "/".join(parts)
    if not parts:
        base, rel = page, "index.html"
    elif parts[0] == "ort":
        base, rel = ort_dir, "/".join(parts[1:])
    elif parts[0] == "model":
        base, rel = model_dir, "/".join(parts[1:])
    elif rel in PAGE_FILES or any(rel.startswith(d) for d in PAGE_FILES if d.endswith("/")):
        base = page
    else:
        return None
    f = (base / rel).resolve()
    if not f.is_file() or not f.is_relative_to(base.resolve()):
        return None
    return f


def make_handler(page: Path, model_dir: Path, ort_dir: Path):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "gdq-web"

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            f = resolve(page, model_dir, ort_dir, self.path)
            if f is None:
                self.send_response(404)
                data = b"not found\n"
                ctype = "text/plain"
            else:
                self.send_response(200)
                data = f.read_bytes()
                ctype = TYPES.get(f.suffix) or mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # quiet: the URL is what matters
            pass

    return Handler


def check(page: Path, model_dir: Path, ort: Path | None = None) -> Path:
    """What ``server`` needs, in one line each; returns onnxruntime-web's folder."""
    if not (page / "index.html").is_file():
        raise ConfigError(f"the browser demo's page is not at '{page}' (index.html): reinstall granular-mobile")
    ort_dir = find_ort(ort)
    if ort_dir is None:
        if ort is not None:
            raise ConfigError(f"``ort`` {ort}: no onnxruntime-web there (ort.wasm.min.mjs; its node_modules/"
                              "onnxruntime-web/dist folder)")
        raise ConfigError(f"onnxruntime-web is not installed: run `npm install --prefix {ort_cache()} "
                          f"onnxruntime-web@{ORT_WEB_VERSION}` (in a checkout: `npm ci --prefix web_demo`)")
    if not model_dir.is_dir():
        raise ModelNotFoundError(f"model '{model_dir}' is not an export folder")
    if not (model_dir / "manifest.json").is_file():
        raise ModelNotFoundError(f"'{model_dir}' has no manifest.json (make one with `gdq export -o {model_dir}`)")
    from .runtime.manifest import ExportFolder

    ExportFolder(model_dir).target("onnx")  # the page runs the ONNX graphs: refused here, not in the page
    return ort_dir


def server(model_dir: Path, port: int = 8000, page: Path = PAGE, ort: Path | None = None
           ) -> http.server.ThreadingHTTPServer:
    """A bound server (not started); port 0 picks a free one (``server.server_address[1]``).
    ``ort``: onnxruntime-web's ``dist`` folder (default: ``find_ort``)."""
    ort_dir = check(page, model_dir, ort)
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), make_handler(page, model_dir.resolve(), ort_dir))
    except OSError as e:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}; choose another ``port``") from e
