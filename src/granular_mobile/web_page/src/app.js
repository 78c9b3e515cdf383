// The page: load and check an export (manifest.json + graphs), open an image, upscale it
// with the pipeline of the Python runtime, show and download the result.
// URL parameters: model=URL of an export folder (default: model/, the one gdq web serves),
// threads=N, ep=wasm|webgpu.
import { parseManifest, graphNames, checkFile, modelId, ManifestError } from './manifest.js';
import { upscale, UpscaleError, checkOptions } from './pipeline.js';
import { decodeFile, toImageData } from './decode.js';
import { encodePng } from './png.js';
import { axisWeights } from './tiler.js';
import { levelColour, levelLabel } from './colours.js';
import { loadOrt, makeGraphs } from './graphs.js';

/** Tile k's level name (`a6k4`, `fp32`; the pipeline names every tile's level). */
const tileLevel = (report, k) => report.tile_levels[k];

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DISPLAY_MAX = 16e6; // pixels of a display canvas (phone browsers cap a canvas near 16.7 MP)

const gdq = window.gdq = { state: 'loading', stats: null, png: null, error: null };
let man = null, bytes = null, mid = '', image = null, fileName = '', engine = null;

function setState(s) { gdq.state = s; document.body.dataset.state = s; }

function message(text, kind = 'error') {
  const m = $('message');
  m.hidden = !text;
  m.textContent = text || '';
  m.className = kind;
  if (kind === 'error' && text) { gdq.error = text; setState('error'); }
}

function fail(e) {
  const known = e instanceof UpscaleError || e instanceof ManifestError;
  message(known ? e.message : `unexpected error: ${e && e.message ? e.message : e}`);
  if (!known) console.error(e);
  $('progress').hidden = true;
  $('run').disabled = !man || !image;
}

async function fetchBytes(url) {
  let r;
  try { r = await fetch(url); } catch (e) { throw new ManifestError(`cannot fetch ${url}: ${e.message}`); }
  if (!r.ok) throw new ManifestError(`cannot fetch ${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function loadModel() {
  const base = new URL(params.get('model') || 'model/', location.href);
  const murl = new URL('manifest.json', base).href;
  let raw;
  try {
    raw = JSON.parse(new TextDecoder().decode(await fetchBytes(murl)));
  } catch (e) {
    if (e instanceof ManifestError) throw e;
    throw new ManifestError(`${murl} is not valid JSON (${e.message})`);
  }
  man = parseManifest(raw, murl);
  bytes = new Map();
  const names = graphNames(man);
  let got = 0;
  $('model-line').textContent = `Loading ${names.length} graphs…`;
  await Promise.all(names.map(async (n) => {
    const b = await fetchBytes(new URL(n, base).href);
    await checkFile(man, n, b); // Web Crypto sha256 against manifest.json
    bytes.set(n, b);
    $('model-line').textContent = `Loading graphs… ${++got}/${names.length}`;
  }));
  mid = await modelId(man);
  const mb = [...bytes.values()].reduce((a, b) => a + b.length, 0) / 1e6;
  const name = raw.model && raw.model.name ? raw.model.name : 'model';
  $('model-line').textContent = `${name} ×${man.scale}, tile ${man.tile}, levels ${man.levels.join('/')}`
    + `${man.files.fp32 ? ' + fp32' : ''} · ${mb.toFixed(1)} MB, sha256 checked · id ${mid}`;
  $('scale').textContent = man.scale;
  const mode = $('mode');
  mode.innerHTML = `<option value="auto">Granular-DQ (${man.gate ? 'a level per tile, within a time budget' : 'bits per tile'})</option>`
    + man.levels.map((lv) => `<option value="${lv}">Static ${lv}</option>`).join('')
    + (man.files.fp32 ? '<option value="fp32">Full precision (fp32)</option>' : '');
  // the level gate's run-time knob: the tiles' mean time relative to the full graph
  const b = $('budget');
  $('budget-label').hidden = !man.gate;
  if (man.gate) {
    b.step = 'any'; // a value off a 0.05 grid from min stays itself (the manifest's default, a typed budget)
    b.min = String(Math.min(...man.gate.costs));
    b.max = String(Math.max(...man.gate.costs));
    b.value = String(man.gate.budget);
    const show = () => { $('budget-value').textContent = Number(b.value).toFixed(2); };
    b.addEventListener('input', show);
    show();
    mode.addEventListener('change', () => { b.disabled = mode.value !== 'auto'; });
  }
}

function setupThreads() {
  const iso = window.crossOriginIsolated;
  const cores = navigator.hardwareConcurrency || 1;
  const max = iso ? Math.min(cores, 16) : 1;
  const sel = $('threads');
  const opts = [...new Set([1, 2, 4, 8, max].filter((n) => n <= max))].sort((a, b) => a - b);
  sel.innerHTML = opts.map((n) => `<option value="${n}">${n}</option>`).join('');
  const want = Number(params.get('threads') || Math.min(max, 4));
  if (want > max) {
    message(`${want} threads need a cross-origin isolated page on a device with that many cores `
      + `(here: ${iso ? `${cores} cores` : 'not isolated; serve it with gdq web'}); using ${max}`, 'info');
  }
  sel.value = String(opts.includes(want) ? want : max);
  if (!iso) sel.title = 'several threads need cross-origin isolation (serve the page with gdq web)';
  $('ep').value = params.get('ep') === 'webgpu' ? 'webgpu' : 'wasm';
  // onnxruntime-web fixes its threads and engine when it starts: a change reloads the page
  for (const id of ['threads', 'ep']) {
    $(id).addEventListener('change', () => {
      if (!engine) return;
      const p = new URLSearchParams(location.search);
      p.set('threads', $('threads').value);
      p.set('ep', $('ep').value);
      location.search = p.toString();
    });
  }
}

async function getEngine() {
  const threads = Number($('threads').value), ep = $('ep').value;
  if (ep === 'webgpu' && !navigator.gpu) throw new UpscaleError('this browser has no WebGPU; choose WebAssembly');
  if (!engine) {
    const ort = await loadOrt(ep, threads);
    engine = { ort, threads, ep, graphs: makeGraphs(ort, man, bytes, ep) };
  }
  return engine;
}

async function openFile(file) {
  if (!file) return;
  message('');
  image = null;
  $('run').disabled = true;
  $('result').hidden = true;
  fileName = file.name || 'image.png';
  $('drop-text').innerHTML = `<b>${escapeHtml(fileName)}</b> — reading…`;
  try {
    if (!man) throw new UpscaleError('the model is not loaded');
    image = await decodeFile(file, man.scale);
    const kind = { 1: 'grey', 2: 'grey + alpha', 3: 'RGB', 4: 'RGBA' }[image.channels];
    $('drop-text').innerHTML = `<b>${escapeHtml(fileName)}</b> — ${image.width}×${image.height} ${kind}. `
      + 'Choose another, or drop one here';
    $('run').disabled = false;
    setState('image');
  } catch (e) {
    $('drop-text').innerHTML = '<b>Open an image</b> or drop it here';
    fail(e);
  }
}

const escapeHtml = (s) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

async function run() {
  if (!image || !man) return;
  message('');
  const mode = $('mode').value;
  // a full-depth level a<b> is bits b (bits_mode "8", as gdq run --bits 8); another level by its name
  const full = /^a\d+$/.test(mode) && man.bits.includes(Number(mode.slice(1)));
  const opts = mode === 'fp32' ? { precision: 'fp32', bits: 'auto' } : { precision: 'int8', bits: full ? Number(mode.slice(1)) : mode };
  if (mode === 'auto' && man.gate) opts.budget = Number($('budget').value);
  $('run').disabled = true;
  $('progress').hidden = false;
  $('bar').value = 0;
  $('progress-text').textContent = 'starting the engine…';
  setState('running');
  try {
    checkOptions(man, opts);
    const eng = await getEngine();
    const t0 = performance.now();
    let first = 0;
    const { image: out, report } = await upscale(image, man, eng.graphs, {
      ...opts,
      backendName: `onnxruntime-web/${eng.ep}`,
      progress(done, n) {
        const now = performance.now();
        if (done === 1) first = now;
        const per = done > 1 ? (now - first) / (done - 1) : now - t0; // the first tile includes session set-up
        const eta = (n - done) * per / 1000;
        $('bar').value = done / n;
        $('progress-text').textContent = `${done}/${n} tiles · ETA ${eta < 60 ? `${eta.toFixed(0)} s` : `${(eta / 60).toFixed(1)} min`}`;
      },
    });
    const total = (performance.now() - t0) / 1000;
    const outName = fileName.replace(/\.[^.]*$/, '') + `_x${man.scale}.png`;
    const stats = { ...report };
    delete stats.tile_bits;
    delete stats.tile_levels;
    for (const k of Object.keys(stats.timings_s)) stats.timings_s[k] = Math.round(stats.timings_s[k] * 1e4) / 1e4;
    Object.assign(stats, { input: fileName, output: outName, model: mid, threads: eng.threads, ep: eng.ep,
      total_s: Math.round(total * 1e4) / 1e4, tile_bits: report.tile_bits });
    gdq.png = await encodePng(out);
    gdq.stats = stats;
    gdq.outName = outName;
    show(out, report, stats);
    $('progress-text').textContent = `${report.tiles}/${report.tiles} tiles · ${total.toFixed(1)} s`;
    setState('done');
  } catch (e) {
    fail(e);
    return;
  }
  $('run').disabled = false;
}

function displaySize(w, h) {
  const k = Math.min(1, Math.sqrt(DISPLAY_MAX / (w * h)));
  return [Math.max(1, Math.round(w * k)), Math.max(1, Math.round(h * k))];
}

async function show(out, report, stats) {
  $('result').hidden = false;
  const [dw, dh] = displaySize(out.width, out.height);
  const before = $('before'), after = $('after');
  before.width = after.width = dw;
  before.height = after.height = dh;
  const lr = await createImageBitmap(toImageData(image));
  const bctx = before.getContext('2d');
  bctx.imageSmoothingQuality = 'high';
  bctx.drawImage(lr, 0, 0, dw, dh);
  const sr = await createImageBitmap(toImageData(out));
  after.getContext('2d').drawImage(sr, 0, 0, dw, dh);
  drawBitmap(report);
  const ms = (s) => `${(s * 1000).toFixed(0)} ms`;
  const tpb = Object.entries(report.tiles_per_level).map(([lv, n]) => `${lv}: ${n}`).join(', ');
  const rows = [
    ['Output', `${out.width}×${out.height} (${stats.output})`],
    ['Mode', report.precision === 'fp32' ? 'full precision (fp32)' : report.bits_mode === 'auto'
      ? `Granular-DQ${report.budget === null ? '' : `, time budget ${report.budget.toFixed(2)} (spent ${report.cost.toFixed(2)})`}`
      : `static ${report.bits_mode}`],
    ['FAB (mean bits per tile)', report.fab === null ? '—' : report.fab.toFixed(2)],
    ['Tiles per level', report.precision === 'fp32' ? `fp32: ${report.tiles}` : tpb],
    ['Controller / SR / stitch', `${ms(report.timings_s.controller)} / ${ms(report.timings_s.sr)} / ${ms(report.timings_s.stitch)}`],
    ['Total', `${stats.total_s.toFixed(2)} s · ${(stats.total_s * 1000 / report.tiles).toFixed(0)} ms per tile`],
    ['Engine', `${stats.ep === 'webgpu' ? 'WebGPU' : 'WebAssembly'}, ${stats.threads} thread${stats.threads > 1 ? 's' : ''}`],
  ];
  $('stats').innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${escapeHtml(String(v))}</td></tr>`).join('');
}

function drawBitmap(report) {
  const cv = $('bitmap');
  const { width: w, height: h } = image;
  cv.width = w;
  cv.height = h;
  const ctx = cv.getContext('2d');
  const { ys, xs } = report.plan, t = report.tile;
  // the tile that owns a pixel is the one the "center" merge gives it to (as gdq run --bitmap)
  const span = (pos, len) => axisWeights(pos, t, len, 1, 'center').map((a, i) => {
    const lo = a.indexOf(1), hi = a.lastIndexOf(1) + 1;
    return [pos[i] + lo, Math.min(pos[i] + hi, len)];
  });
  const sy = span(ys, h), sx = span(xs, w);
  let k = 0;
  for (const [y0, y1] of sy) {
    for (const [x0, x1] of sx) {
      const c = levelColour(tileLevel(report, k++));
      ctx.fillStyle = `rgba(${c.join(',')},0.45)`;
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      ctx.strokeStyle = 'rgba(0,0,0,0.5)';
      ctx.lineWidth = Math.max(0.5, w / 800);
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
  const counts = {};
  for (let i = 0; i < report.tile_bits.length; i++) {
    const lv = tileLevel(report, i);
    counts[lv] = (counts[lv] || 0) + 1;
  }
  $('legend').innerHTML = Object.keys(counts).sort().map((lv) => {
    const c = levelColour(lv);
    return `<span><i style="background:rgb(${c.join(',')})"></i>${levelLabel(lv)} · ${counts[lv]} tile${counts[lv] > 1 ? 's' : ''}</span>`;
  }).join('');
}

function download() {
  if (!gdq.png) return;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([gdq.png], { type: 'image/png' }));
  a.download = gdq.outName;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** For benchmarks (upscale_headless.mjs --bench): create and run every graph the mode uses once. */
gdq.warm = async (mode) => {
  const eng = await getEngine();
  await eng.graphs.warm(mode === 'fp32' ? 'fp32' : 'int8', mode === 'auto' || mode === 'fp32' ? 'auto' : mode);
};

function wire() {
  $('file').addEventListener('change', (e) => openFile(e.target.files[0]));
  const drop = $('drop');
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); openFile(e.dataTransfer.files[0]); });
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => { e.preventDefault(); openFile(e.dataTransfer.files[0]); });
  $('run').addEventListener('click', run);
  $('download').addEventListener('click', download);
  $('slider').addEventListener('input', (e) => {
    $('after').style.clipPath = `inset(0 0 0 ${e.target.value}%)`;
    $('handle').style.left = `${e.target.value}%`;
  });
  $('show-bitmap').addEventListener('change', (e) => { $('bitmap').hidden = !e.target.checked; });
}

wire();
setupThreads();
loadModel().then(() => {
  if (gdq.state !== 'error') setState('ready');
}).catch((e) => {
  $('model-line').textContent = 'No model loaded.';
  fail(e);
  setState('model-error');
});
