// The Upscaler of granular_mobile/runtime/upscaler.py for the browser: static tiles, the same
// overlap and merge, the controller per tile, each tile on its level's graph, stitching in
// bands; grey (R = G = B) and alpha handled as the Python runtime does. No DOM: the graphs are
// run through callbacks, so this module runs in Node too.
import { TilePlan, BandStitcher, extractTile, roundHalfEven } from './tiler.js';
import { resizeCubicU8 } from './resize.js';
import { allocate, checkBudget } from './budget.js';

export class UpscaleError extends Error {}

/** The largest output this page produces (pixels): beyond it a browser tab runs out of memory
 * (and phone browsers cap a canvas at about 16.7 million pixels, an output of 4096 x 4096). */
export const MAX_OUTPUT_PIXELS = 64e6;

/** The runtime's tiling (granular_mobile/defaults.py: DEFAULT_OVERLAP, DEFAULT_MERGE): each tile
 * keeps the centre of 6-pixel overlaps, as gdq eval and gdq run do. */
export const DEFAULT_OVERLAP = 6;
export const DEFAULT_MERGE = 'center';

/** Check the options as Upscaler.__init__ does; returns {bits, level, budget, overlap, ...} normalised:
 * bits 'auto', a bit-width (its full-depth level a<bits>) or a level name (a6k4); budget (a level
 * gate's mean time per tile relative to the full graph; default: the manifest's) or null. */
export function checkOptions(man, { bits = 'auto', precision = 'int8', overlap = null, merge = DEFAULT_MERGE, budget = null }) {
  const tile = man.tile;
  overlap = overlap === null || overlap === undefined ? Math.min(DEFAULT_OVERLAP, Math.floor(tile / 4)) : overlap;
  if (!['int8', 'fp32'].includes(precision)) throw new UpscaleError(`precision '${precision}' is unknown; valid: int8, fp32`);
  if (precision === 'fp32' && !man.files.fp32) throw new UpscaleError('full precision needs the fp32 graph, which this model does not have');
  if (precision === 'fp32' && String(bits) !== 'auto') {
    throw new UpscaleError(`bits ${bits} picks an integer graph, and fp32 runs the full-precision twin on every tile: give one of them`);
  }
  const levels = man.levels || man.bits.map((b) => `a${b}`);
  const valid = ['auto', ...man.bits, ...levels.filter((lv) => !man.bits.some((b) => `a${b}` === lv))].join(', ');
  let level = 'auto';
  if (typeof bits === 'string' && levels.includes(bits)) level = bits;
  else if (String(bits) !== 'auto') {
    const b = Number(bits);
    if (!Number.isInteger(b) || !man.bits.includes(b)) {
      throw new UpscaleError(`bits '${bits}' is not a bit level of this model; valid: ${valid}`);
    }
    bits = b;
    level = `a${b}`;
  }
  if (budget !== null && budget !== undefined) {
    if (!man.gate) throw new UpscaleError('a budget needs a model with a level gate (gdq fit-gate --levels)');
    if (level !== 'auto' || precision === 'fp32') throw new UpscaleError("a budget sets the controller's operating point: drop bits / fp32");
    try { checkBudget(budget, man.gate.costs); } catch (e) { throw new UpscaleError(e.message); }
  } else budget = man.gate && level === 'auto' && precision === 'int8' ? man.gate.budget : null;
  if (!(overlap >= 0 && overlap < Math.floor(tile / 2))) throw new UpscaleError(`overlap ${overlap} must be in 0..${Math.floor(tile / 2) - 1}`);
  if (!['center', 'blend'].includes(merge)) throw new UpscaleError(`merge '${merge}' is unknown; valid: center, blend`);
  return { bits, level, budget, precision, overlap, merge };
}

/** Refuse an image the page cannot hold, before decoding or allocating it. */
export function checkSize(width, height, scale, maxOutput = MAX_OUTPUT_PIXELS) {
  if (Math.min(width, height) < 2) throw new UpscaleError(`image of ${width}x${height} pixels is too small to upscale (at least 2x2)`);
  const out = width * height * scale * scale;
  if (out > maxOutput) {
    throw new UpscaleError(`image of ${width}x${height} pixels is too large for this browser page: its x${scale} result `
      + `(${width * scale}x${height * scale}, ${(out / 1e6).toFixed(0)} MP) exceeds ${(maxOutput / 1e6).toFixed(0)} MP; `
      + 'crop or downscale it, or use gdq run');
  }
}

/**
 * Upscale an 8-bit image {width, height, channels (1..4), data: Uint8Array HWC}.
 * graphs: {controller(tileNCHW) -> Promise<bits:int>, scores(tileNCHW) -> Promise<gain per choice> (a level
 * gate), sr(tileNCHW, level name|null) -> Promise<Float32Array NCHW>}.
 * Returns {image: {width, height, channels, data}, report} with the fields of gdq run --stats.
 */
export async function upscale(img, man, graphs, opts = {}) {
  const { bits, level, budget, precision, overlap, merge } = checkOptions(man, opts);
  const progress = opts.progress || (() => {});
  const now = opts.now || (() => performance.now() / 1000);
  const { width: w, height: h, channels: c, data } = img;
  if (![1, 2, 3, 4].includes(c)) throw new UpscaleError(`expected 1 to 4 channels, got ${c}`);
  checkSize(w, h, man.scale, opts.maxOutput);
  const n = w * h;
  const hasAlpha = c === 2 || c === 4;
  const cc = c <= 2 ? 1 : 3; // colour channels
  const rgb = new Uint8Array(n * 3);
  let grey = true;
  for (let i = 0; i < n; i++) {
    const r = data[i * c], g = cc === 3 ? data[i * c + 1] : r, b = cc === 3 ? data[i * c + 2] : r;
    if (g !== r || b !== r) grey = false;
    rgb[3 * i] = r; rgb[3 * i + 1] = g; rgb[3 * i + 2] = b;
  }
  if (grey && cc === 3) for (let i = 0; i < n; i++) rgb[3 * i + 1] = rgb[3 * i + 2] = rgb[3 * i];
  const s = man.scale, t = man.tile;
  const plan = new TilePlan(h, w, t, t - overlap, s, merge);
  const report = {
    tiles: plan.length, tiles_per_bit: {}, fab: null, timings_s: { controller: 0, sr: 0, stitch: 0 }, sr_s_per_level: {},
    backend: opts.backendName || 'onnxruntime-web', precision, bits_mode: String(bits), tile: t, overlap, merge,
    plan: { ys: plan.ys, xs: plan.xs }, tile_bits: [], tile_levels: [], tiles_per_level: {}, budget, cost: null,
  };
  const W = w * s, H = h * s;
  const out = new Uint8Array(W * H * 3);
  const st = new BandStitcher(plan);
  let done = 0, row0 = 0;
  let gated = null;
  if (budget !== null) { // the level gate: every tile's scores first, the budget is the image's
    const t0 = now();
    const scores = [];
    for (const y of plan.ys) for (const x of plan.xs) scores.push(await graphs.scores(extractTile(rgb, h, w, y, x, t)));
    gated = allocate(scores, man.gate.costs, budget).map((c) => man.gate.choices[c]);
    const costOf = Object.fromEntries(man.gate.choices.map((c, i) => [c, man.gate.costs[i]]));
    report.cost = gated.reduce((a, lv) => a + costOf[lv], 0) / gated.length;
    report.timings_s.controller += now() - t0;
  }
  for (let r = 0; r < plan.ys.length; r++) {
    const y = plan.ys[r];
    const tiles = plan.xs.map((x) => extractTile(rgb, h, w, y, x, t));
    let t0 = now();
    let row;
    if (precision === 'fp32') row = tiles.map(() => 'fp32');
    else if (gated) row = gated.slice(r * tiles.length, (r + 1) * tiles.length);
    else if (level === 'auto') {
      row = [];
      for (const tl of tiles) row.push(`a${await graphs.controller(tl)}`);
    } else row = tiles.map(() => level);
    report.timings_s.controller += now() - t0;
    const srs = new Array(tiles.length);
    for (const lv of [...new Set(row)].sort()) {
      for (let i = 0; i < tiles.length; i++) {
        if (row[i] !== lv) continue;
        t0 = now();
        srs[i] = await graphs.sr(tiles[i], lv === 'fp32' ? null : lv);
        const dt = now() - t0;
        report.timings_s.sr += dt;
        report.sr_s_per_level[lv] = (report.sr_s_per_level[lv] || 0) + dt;
        done += 1;
        progress(done, plan.length);
      }
    }
    t0 = now();
    for (let col = 0; col < tiles.length; col++) st.add(r, col, srs[col]);
    const band = st.flush(r);
    out.set(band, row0);
    row0 += band.length;
    report.timings_s.stitch += now() - t0;
    report.tile_levels.push(...row);
  }
  const bitsOf = { ...(man.levelBits || Object.fromEntries(man.bits.map((b) => [`a${b}`, b]))), fp32: 32 };
  report.tile_bits = report.tile_levels.map((lv) => bitsOf[lv]);
  for (const lv of [...report.tile_levels].sort()) report.tiles_per_level[lv] = (report.tiles_per_level[lv] || 0) + 1;
  if (precision !== 'fp32') {
    const counts = {};
    for (const b of [...report.tile_bits].sort((a, z) => a - z)) counts[b] = (counts[b] || 0) + 1;
    report.tiles_per_bit = counts;
    report.fab = report.tile_bits.reduce((a, b) => a + b, 0) / report.tile_bits.length;
  }
  // layout of the result, as Upscaler.__call__ (+ write_rgb: grey+alpha is written as RGBA)
  const outC = c === 1 ? 1 : c === 3 ? 3 : 4;
  const res = outC === 3 && !grey ? out : new Uint8Array(W * H * outC);
  if (res !== out) {
    for (let i = 0; i < W * H; i++) {
      let r = out[3 * i], g = out[3 * i + 1], b = out[3 * i + 2];
      if (grey) { // mean of R, G, B in float32, rounded half to even
        r = g = b = roundHalfEven(Math.fround((r + g + b) / 3));
      }
      if (outC === 1) res[i] = r;
      else { res[i * outC] = r; res[i * outC + 1] = g; res[i * outC + 2] = b; }
    }
  }
  if (hasAlpha) {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) a[i] = data[i * c + c - 1];
    const A = resizeCubicU8(a, h, w, H, W);
    for (let i = 0; i < W * H; i++) res[i * 4 + 3] = A[i];
  }
  return { image: { width: W, height: H, channels: outC, data: res }, report };
}
