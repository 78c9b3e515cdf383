// A static server for the page, as `gdq web` serves it (same paths, same headers), for the
// headless script and tests without Python: / the page, /ort/ onnxruntime-web, /model/ an export.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { resolve, join, sep, extname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_ROOT = fileURLToPath(new URL('.', import.meta.url));
// the page ships inside the Python package (gdq web serves it from an install too)
export const PAGE_ROOT = resolve(WEB_ROOT, '..', 'src', 'granular_mobile', 'web_page');
export const DEFAULT_MODEL = resolve(WEB_ROOT, '..', 'src', 'granular_mobile', 'assets', 'export');
const ORT = join(WEB_ROOT, 'node_modules', 'onnxruntime-web', 'dist');
const PAGE = ['index.html', 'style.css'];
const TYPES = { '.mjs': 'text/javascript', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json',
  '.onnx': 'application/octet-stream', '.css': 'text/css', '.html': 'text/html; charset=utf-8', '.png': 'image/png' };
export const HEADERS = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-cache' };

function mapPath(urlPath, modelDir) {
  const parts = decodeURIComponent(new URL(urlPath, 'http://x').pathname).split('/').filter(Boolean);
  if (parts.some((s) => s.startsWith('.'))) return null;
  if (!parts.length) return join(PAGE_ROOT, 'index.html');
  const [head, ...rest] = parts;
  let base;
  if (head === 'ort') base = ORT;
  else if (head === 'model') base = modelDir;
  else if (head === 'src' || (parts.length === 1 && PAGE.includes(head))) return join(PAGE_ROOT, ...parts);
  else return null;
  const f = resolve(base, ...rest);
  return f.startsWith(resolve(base) + sep) ? f : null;
}

/** Start a server on 127.0.0.1 (port 0: any free one); resolves to {url, close()}. */
export async function serve(modelDir = DEFAULT_MODEL, port = 0) {
  const model = resolve(modelDir);
  const srv = createServer(async (req, res) => {
    const f = mapPath(req.url, model);
    try {
      if (!f || !(await stat(f)).isFile()) throw new Error('missing');
      const data = await readFile(f);
      res.writeHead(200, { 'Content-Type': TYPES[extname(f)] || 'application/octet-stream', 'Content-Length': data.length, ...HEADERS });
      res.end(req.method === 'HEAD' ? undefined : data);
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain', ...HEADERS });
      res.end('not found\n');
    }
  });
  await new Promise((ok, ko) => { srv.once('error', ko); srv.listen(port, '127.0.0.1', ok); });
  return { url: `http://127.0.0.1:${srv.address().port}/`, close: () => new Promise((ok) => srv.close(ok)) };
}
