// Tiling plan, tile extraction and band stitching: a port of granular_mobile/runtime/tiler.py.
// Plain ES module (no DOM), tested in Node against the Python golden vectors.
// Every float operation is IEEE single precision (Math.fround / Float32Array), in the order
// numpy performs it, so that the stitched uint8 image is bit-identical to the Python runtime's.

const f = Math.fround;

/** Tile start positions along one axis (the last one moved back to end at the border). */
export function axisPositions(length, tile, step) {
  if (length <= tile) return [0];
  const n = Math.ceil((length - tile) / step) + 1;
  const out = [];
  for (let i = 0; i < n; i++) out.push(Math.min(i * step, length - tile));
  return out;
}

/** Per-tile 1-D weights (Float32Array of tile*scale) along one axis, in output pixels. */
export function axisWeights(positions, tile, length, scale, mode) {
  const t = tile * scale, n = positions.length;
  const span = Math.min(length, tile);
  const out = [];
  for (let i = 0; i < n; i++) {
    const p = positions[i];
    const w = new Float32Array(t);
    if (mode === 'center') {
      const lo = i === 0 ? 0 : Math.floor((positions[i - 1] + tile + p) / 2);
      const hi = i === n - 1 ? p + span : Math.floor((p + tile + positions[i + 1]) / 2);
      w.fill(1, (lo - p) * scale, (hi - p) * scale);
    } else if (mode === 'blend') {
      w.fill(1, 0, span * scale);
      if (i > 0) {
        const ov = (positions[i - 1] + tile - p) * scale;
        for (let k = 0; k < ov; k++) w[k] = f(f(k + 0.5) / ov);
      }
      if (i < n - 1) {
        const ov = (p + tile - positions[i + 1]) * scale;
        for (let k = 0; k < ov; k++) w[t - ov + k] = Math.min(w[t - ov + k], f(1 - f(f(k + 0.5) / ov)));
      }
    } else {
      throw new Error(`unknown merge mode '${mode}'`);
    }
    out.push(w);
  }
  return out;
}

export class TilePlan {
  constructor(height, width, tile, step, scale, merge = 'center') {
    Object.assign(this, { height, width, tile, step, scale, merge });
    this.ys = axisPositions(height, tile, step);
    this.xs = axisPositions(width, tile, step);
  }
  get length() { return this.ys.length * this.xs.length; }
  get positions() { return this.ys.flatMap((y) => this.xs.map((x) => [y, x])); }
}

/** numpy.round on a float: half to even. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/** Source index of a reflect pad (numpy 'reflect', or 'edge' for a 1-pixel axis). */
function reflect(i, n) {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  i %= period;
  return i < n ? i : period - i;
}

/**
 * One tile as an NCHW float32 tensor (1, 3, tile, tile) on [0, 1], from an RGB uint8 image
 * (Uint8Array, HxWx3). Pixels past the bottom/right border are reflect-padded, as
 * pad_to_tile does for an image smaller than a tile.
 */
export function extractTile(rgb, height, width, y, x, tile) {
  const out = new Float32Array(3 * tile * tile);
  const plane = tile * tile;
  for (let r = 0; r < tile; r++) {
    const sy = reflect(y + r, height);
    for (let c = 0; c < tile; c++) {
      const sx = reflect(x + c, width);
      const s = (sy * width + sx) * 3, d = r * tile + c;
      out[d] = f(rgb[s] / 255);
      out[plane + d] = f(rgb[s + 1] / 255);
      out[2 * plane + d] = f(rgb[s + 2] / 255);
    }
  }
  return out;
}

/**
 * Row-by-row stitching with a band accumulator one tile high (BandStitcher in Python).
 * add(row, col, tile) takes an SR tile as NCHW float32 (3 planes of (tile*s)^2) or, with
 * hwc = true, HWC float32; flush(row) returns the finished output rows as HWC uint8.
 */
export class BandStitcher {
  constructor(plan, channels = 3) {
    this.plan = plan;
    this.c = channels;
    const s = plan.scale, t = plan.tile;
    this.ts = t * s;
    this.pw = Math.max(plan.width, t) * s;
    this.outH = plan.height * s;
    this.outW = plan.width * s;
    this.acc = new Float32Array(this.ts * this.pw * channels);
    this.wsum = new Float32Array(this.ts * this.pw);
    this.origin = 0;
    this.wy = axisWeights(plan.ys, t, plan.height, s, plan.merge);
    this.wx = axisWeights(plan.xs, t, plan.width, s, plan.merge);
  }

  add(row, col, tile, hwc = false) {
    const { scale: s } = this.plan;
    const ts = this.ts, c = this.c, pw = this.pw, plane = ts * ts;
    const y0 = this.plan.ys[row] * s - this.origin, x0 = this.plan.xs[col] * s;
    const wy = this.wy[row], wx = this.wx[col];
    for (let r = 0; r < ts; r++) {
      const arow = (y0 + r) * pw + x0;
      for (let q = 0; q < ts; q++) {
        const w = f(wy[r] * wx[q]);
        const a = (arow + q) * c;
        for (let k = 0; k < c; k++) {
          const v = hwc ? tile[(r * ts + q) * c + k] : tile[k * plane + r * ts + q];
          this.acc[a + k] += f(v * w); // Float32Array store rounds the sum to single
        }
        this.wsum[arow + q] += w;
      }
    }
  }

  flush(row) {
    const s = this.plan.scale, c = this.c, pw = this.pw, outW = this.outW;
    const last = row === this.plan.ys.length - 1;
    const end = last ? this.outH : this.plan.ys[row + 1] * s;
    const n = end - this.origin;
    const out = new Uint8Array(n * outW * c);
    for (let r = 0; r < n; r++) {
      for (let q = 0; q < outW; q++) {
        const ws = this.wsum[r * pw + q];
        if (!(ws > 0)) throw new Error('stitching left pixels without a tile (internal error in the tile plan)');
        for (let k = 0; k < c; k++) {
          const v = roundHalfEven(f(f(this.acc[(r * pw + q) * c + k] / ws) * 255));
          out[(r * outW + q) * c + k] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
      }
    }
    // shift the unfinished rows to the top of the band
    const rows = this.ts;
    this.acc.copyWithin(0, n * pw * c, rows * pw * c);
    this.acc.fill(0, (rows - n) * pw * c);
    this.wsum.copyWithin(0, n * pw, rows * pw);
    this.wsum.fill(0, (rows - n) * pw);
    this.origin = end;
    return out;
  }
}

/** The synthetic SR tile of the golden vectors: ((k*7 + y*3 + x*5 + c) % 256) / 255, HWC. */
export function syntheticTile(k, size, channels = 3) {
  const out = new Float32Array(size * size * channels);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let c = 0; c < channels; c++)
        out[(y * size + x) * channels + c] = f(((k * 7 + y * 3 + x * 5 + c) % 256) / 255);
  return out;
}
