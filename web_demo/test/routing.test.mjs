// Routing: every tile's pixels are what its own level's graph computes on that tile alone.
// The report (levels per tile) would look the same if the pipeline ran a row's tiles at one
// level, so the graphs here are stand-ins whose output says which level made it, and each
// tile is checked where it alone decides the output ("center": every pixel it keeps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { upscale } from '../../src/granular_mobile/web_page/src/pipeline.js';
import { allocate } from '../../src/granular_mobile/web_page/src/budget.js';
import { TilePlan, axisWeights, extractTile, roundHalfEven } from '../../src/granular_mobile/web_page/src/tiler.js';

const T = 16, S = 2;
const man = { tile: T, scale: S, bits: [4, 5, 6], files: {} };
// a manifest with levels and a level gate: an exit level a4k1 and two full-depth levels
const gman = { tile: T, scale: S, bits: [4, 5, 6], levels: ['a4', 'a5', 'a6', 'a4k1'],
  levelBits: { a4: 4, a5: 5, a6: 6, a4k1: 4 }, gate: { choices: ['a4k1', 'a5', 'a6'], costs: [0.4, 1, 1.1], budget: 0.8 }, files: {} };
const DARKEN = { a4: 1, a5: 2, a6: 3, a4k1: 4 };

// level from the tile's mean: the image's bands take every level
const levelOf = (tl) => {
  let m = 0;
  for (let i = 0; i < T * T; i++) m += tl[i];
  m /= T * T;
  return m < 0.3 ? 4 : m < 0.6 ? 5 : 6;
};
// the level gate's stand-in scores: busier (brighter) tiles gain more from dearer levels
const scoresOf = (tl) => {
  let m = 0;
  for (let i = 0; i < T * T; i++) m += tl[i];
  m /= T * T;
  return [0, m, 1.5 * m];
};
// a level's stand-in graph: nearest-neighbour x2 of the tile, darkened by an amount per level
const fakeSr = (tl, level) => {
  const o = T * S, out = new Float32Array(3 * o * o);
  for (let ch = 0; ch < 3; ch++) for (let y = 0; y < o; y++) for (let x = 0; x < o; x++) {
    out[ch * o * o + y * o + x] = tl[ch * T * T + Math.floor(y / S) * T + Math.floor(x / S)] * (1 - 0.05 * DARKEN[level]);
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

async function checkRouting(m, opts, want) {
  const h = 36, w = 60, ov = 4;
  const img = image(h, w);
  const { image: out, report } = await upscale(img, m, {
    controller: async (tl) => levelOf(tl), scores: async (tl) => scoresOf(tl), sr: async (tl, lv) => fakeSr(tl, lv),
  }, { overlap: ov, merge: 'center', ...opts });
  assert.ok(new Set(report.tile_levels).size >= 2, `one level only: ${report.tile_levels}`);
  const plan = new TilePlan(h, w, T, T - ov, S, 'center');
  const wy = axisWeights(plan.ys, T, h, S, 'center'), wx = axisWeights(plan.xs, T, w, S, 'center');
  const rgb = new Uint8Array(h * w * 3);
  rgb.set(img.data);
  let k = 0, checked = 0;
  for (let r = 0; r < plan.ys.length; r++) {
    for (let c = 0; c < plan.xs.length; c++, k++) {
      const b = report.tile_levels[k];
      const tl = extractTile(rgb, h, w, plan.ys[r], plan.xs[c], T);
      assert.equal(want(k, tl), b, `tile ${k}: the report's level is not the controller's`);
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
  return report;
}

test('each tile runs its own level (merge center)', async () => {
  const report = await checkRouting(man, {}, (k, tl) => `a${levelOf(tl)}`);
  assert.deepEqual(report.tile_bits, report.tile_levels.map((lv) => Number(lv.slice(1))));
});

test('with a level gate, each tile runs the level its image\'s budget gives it', async () => {
  const h = 36, w = 60;
  const plan = new TilePlan(h, w, T, T - 4, S, 'center');
  const rgb = image(h, w).data;
  const scores = plan.ys.flatMap((y) => plan.xs.map((x) => scoresOf(extractTile(rgb, h, w, y, x, T))));
  for (const budget of [0.6, 0.8]) {
    const want = allocate(scores, gman.gate.costs, budget).map((c) => gman.gate.choices[c]);
    const report = await checkRouting(gman, { budget }, (k) => want[k]);
    assert.ok(report.cost <= budget + 1e-9 && report.budget === budget);
    assert.deepEqual(report.tile_bits, report.tile_levels.map((lv) => gman.levelBits[lv]));
  }
  const dflt = await checkRouting(gman, {}, (k) => allocate(scores, gman.gate.costs, 0.8).map((c) => gman.gate.choices[c])[k]);
  assert.equal(dflt.budget, 0.8); // the default budget is the manifest's
});

test('the allocation is the Python runtime\'s', () => {
  // python -c "from granular_mobile.runtime.budget import allocate; ..." on these scores
  const s = [[0.0, 0.322, 1.124], [0.0, 0.676, 1.109], [0.0, 0.639, 1.373], [0.0, 0.505, 1.022], [0.0, 1.017, 1.755],
    [0.0, 1.24, 1.889], [0.0, 0.989, 0.99], [0.0, 1.272, 1.586], [0.0, 1.477, 1.948], [0.0, 0.804, 1.511],
    [0.0, 0.465, 1.126], [0.0, 1.139, 1.769]];
  const want = {
    0.4: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.55: [0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1],
    0.7: [2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1], 0.85: [2, 1, 2, 1, 2, 2, 1, 1, 1, 2, 2, 2],
    1.0: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
  };
  for (const [b, w] of Object.entries(want)) assert.deepEqual(allocate(s, [0.4, 0.6, 1.0], Number(b)), w, `budget ${b}`);
  assert.throws(() => allocate(s, [0.4, 0.6, 1.0], 0.3), /below the cheapest level's cost 0.4/);
});
