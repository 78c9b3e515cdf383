// Routing: every tile's pixels are what its own level's graph computes on that tile alone.
// The report (levels per tile) would look the same if the pipeline ran a row's tiles at one
// level, so the graphs here are stand-ins whose output says which level made it, and each
// tile is checked where it alone decides the output ("center": every pixel it keeps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { upscale } from '../src/pipeline.js';
import { TilePlan, axisWeights, extractTile, roundHalfEven } from '../src/tiler.js';

const T = 16, S = 2;
const man = { tile: T, scale: S, bits: [4, 5, 6], files: {} };

// level from the tile's mean: the image's bands take every level
const levelOf = (tl) => {
  let m = 0;
  for (let i = 0; i < T * T; i++) m += tl[i];
  m /= T * T;
  return m < 0.3 ? 4 : m < 0.6 ? 5 : 6;
};
// a level's stand-in graph: nearest-neighbour x2 of the tile, darkened by an amount per level
const fakeSr = (tl, b) => {
  const o = T * S, out = new Float32Array(3 * o * o);
  for (let ch = 0; ch < 3; ch++) for (let y = 0; y < o; y++) for (let x = 0; x < o; x++) {
    out[ch * o * o + y * o + x] = tl[ch * T * T + Math.floor(y / S) * T + Math.floor(x / S)] * (1 - 0.05 * (b - 3));
  }
  return out;
};

function image(h, w) {
  const data = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const v = x < w / 3 ? 40 : x < (2 * w) / 3 ? 120 : 220; // three bands, three levels
    for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = (v + 7 * c + ((x * 13 + y * 7) % 11)) % 256;
  }
  return { width: w, height: h, channels: 3, data };
}

test('each tile runs its own level (merge center)', async () => {
  const h = 36, w = 60, ov = 4;
  const img = image(h, w);
  const { image: out, report } = await upscale(img, man, {
    controller: async (tl) => levelOf(tl), sr: async (tl, b) => fakeSr(tl, b),
  }, { overlap: ov, merge: 'center' });
  assert.ok(new Set(report.tile_bits).size >= 2, `one level only: ${report.tile_bits}`);
  const plan = new TilePlan(h, w, T, T - ov, S, 'center');
  const wy = axisWeights(plan.ys, T, h, S, 'center'), wx = axisWeights(plan.xs, T, w, S, 'center');
  const rgb = new Uint8Array(h * w * 3);
  rgb.set(img.data);
  let k = 0, checked = 0;
  for (let r = 0; r < plan.ys.length; r++) {
    for (let c = 0; c < plan.xs.length; c++, k++) {
      const b = report.tile_bits[k];
      const tl = extractTile(rgb, h, w, plan.ys[r], plan.xs[c], T);
      assert.equal(levelOf(tl), b, `tile ${k}: the report's level is not the controller's`);
      const alone = fakeSr(tl, b);
      const o = T * S;
      for (let y = 0; y < o; y++) for (let x = 0; x < o; x++) {
        if (wy[r][y] !== 1 || wx[c][x] !== 1) continue; // another tile decides this pixel
        const Y = plan.ys[r] * S + y, X = plan.xs[c] * S + x;
        for (let ch = 0; ch < 3; ch++) {
          const want = Math.min(255, Math.max(0, roundHalfEven(Math.fround(alone[ch * o * o + y * o + x] * 255))));
          assert.equal(out.data[(Y * w * S + X) * 3 + ch], want, `tile ${k} (level ${b}) at ${Y},${X}`);
        }
        checked++;
      }
    }
  }
  assert.equal(checked, h * S * w * S); // with "center" every output pixel belongs to one tile
});
