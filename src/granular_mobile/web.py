"""``gdq web``: serve the browser demo (web_demo/) and an export folder on localhost.

Paths: ``/`` the page (web_demo/index.html, style.css, src/), ``/ort/`` onnxruntime-web's
files (web_demo/node_modules/onnxruntime-web/dist, from ``npm ci --prefix web_demo``),
``/model/`` the export folder (manifest.json and the graphs). Every response carries the
headers of cross-origin isolation (COOP same-origin, COEP require-corp), which multithreaded
WebAssembly (SharedArrayBuffer) needs. Binds 127.0.0.1 only. Standard library; no torch.
"""
from __future__ import annotations

import http.server
import mimetypes
import posixpath
import urllib.parse
from pathlib import Path

from .errors import ConfigError, ModelNotFoundError

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
#: what the page needs from web_demo/ (not its tests, scripts or node_modules)
PAGE_FILES = ("index.html", "style.css", "src/")
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".onnx": "application/octet-stream", ".css": "text/css", ".html": "text/html; charset=utf-8"}


def resolve(web_root: Path, model_dir: Path, url_path: str) -> Path | None:
    """The file a URL path maps to, or None (outside the served folders, or missing)."""
    p = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(url_path).path))
    parts = [s for s in p.split("/") if s]
    if any(s in ("..", ".") or s.startswith(".") for s in parts):
        return None
    rel = "/".join(parts)
    if not parts:
        base, rel = web_root, "index.html"
    elif parts[0] == "ort":
        base, rel = web_root / ORT_DIST, "/".join(parts[1:])
    elif parts[0] == "model":
        base, rel = model_dir, "/".join(parts[1:])
    elif rel in PAGE_FILES or any(rel.startswith(d) for d in PAGE_FILES if d.endswith("/")):
        base = web_root
    else:
        return None
    f = (base / rel).resolve()
    if not f.is_file() or not f.is_relative_to(base.resolve()):
        return None
    return f


def make_handler(web_root: Path, model_dir: Path):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "gdq-web"

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            f = resolve(web_root, model_dir, self.path)
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


def check(web_root: Path, model_dir: Path) -> None:
    if not (web_root / "index.html").is_file():
        raise ConfigError(f"the browser demo is not at '{web_root}': gdq web serves the repository's web_demo/ "
                          "(run it from a checkout of granular-mobile)")
    if not (web_root / ORT_DIST / "ort.wasm.min.mjs").is_file():
        raise ConfigError(f"onnxruntime-web is not installed in '{web_root}': run `npm ci --prefix {web_root}`")
    if not model_dir.is_dir():
        raise ModelNotFoundError(f"model '{model_dir}' is not an export folder")
    if not (model_dir / "manifest.json").is_file():
        raise ModelNotFoundError(f"'{model_dir}' has no manifest.json (make one with `gdq export -o {model_dir}`)")
    from .runtime.manifest import ExportFolder

    ExportFolder(model_dir).target("onnx")  # the page runs the ONNX graphs: refused here, not in the page


def server(model_dir: Path, port: int = 8000, web_root: Path = WEB_DEMO) -> http.server.ThreadingHTTPServer:
    """A bound server (not started); port 0 picks a free one (``server.server_address[1]``)."""
    check(web_root, model_dir)
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), make_handler(web_root, model_dir.resolve()))
    except OSError as e:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}; choose another --port") from e
