// The tiling / stitching core reproduces the Python runtime's golden vectors bit for bit
// (the same files the Android demo's Java core is tested against).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { TilePlan, BandStitcher, axisWeights, syntheticTile, roundHalfEven, extractTile } from '../../src/granular_mobile/web_page/src/tiler.js';

const GOLDEN = fileURLToPath(new URL('../../android_demo/core/src/test/resources/golden/tiling.json', import.meta.url));
const cases = JSON.parse(readFileSync(GOLDEN, 'utf8')).cases;

for (const c of cases) {
  test(`golden ${c.height}x${c.width} tile ${c.tile} overlap ${c.overlap} x${c.scale} ${c.merge}`, () => {
    const plan = new TilePlan(c.height, c.width, c.tile, c.tile - c.overlap, c.scale, c.merge);
    assert.deepEqual(plan.ys, c.ys);
    assert.deepEqual(plan.xs, c.xs);
    const wy = axisWeights(plan.ys, c.tile, c.height, c.scale, c.merge);
    assert.deepEqual(wy.map((a) => Array.from(a)), c.weights_y);
    const st = new BandStitcher(plan);
    const parts = [];
    let k = 0;
    for (let r = 0; r < plan.ys.length; r++) {
      for (let col = 0; col < plan.xs.length; col++) st.add(r, col, syntheticTile(k++, c.tile * c.scale), true);
      parts.push(st.flush(r));
    }
    const out = Buffer.concat(parts.map((p) => Buffer.from(p)));
    assert.deepEqual([c.height * c.scale, c.width * c.scale, 3], c.output_shape);
    assert.equal(out.length, c.output_shape.reduce((a, b) => a * b));
    assert.deepEqual(Array.from(out.subarray(0, 24)), c.output_head);
    assert.equal(createHash('sha256').update(out).digest('hex'), c.output_sha256);
  });
}

test('NCHW tiles stitch like HWC tiles', () => {
  const plan = new TilePlan(50, 20, 32, 24, 2, 'blend');
  const a = new BandStitcher(plan), b = new BandStitcher(plan);
  const ts = 64;
  let k = 0;
  for (let r = 0; r < plan.ys.length; r++) {
    for (let col = 0; col < plan.xs.length; col++, k++) {
      const hwc = syntheticTile(k, ts);
      const chw = new Float32Array(hwc.length);
      for (let i = 0; i < ts * ts; i++) for (let ch = 0; ch < 3; ch++) chw[ch * ts * ts + i] = hwc[i * 3 + ch];
      a.add(r, col, hwc, true);
      b.add(r, col, chw);
    }
    assert.deepEqual(a.flush(r), b.flush(r));
  }
});

test('round half to even, as numpy', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 2.4999, 254.5, 255.5].map(roundHalfEven), [0, 2, 2, -0, 2, 254, 256]);
});

test('tiles of an image smaller than a tile are reflect-padded', () => {
  // 2x3 RGB image, tile 4: rows 0 1 0 1, cols 0 1 2 1 (numpy reflect)
  const rgb = Uint8Array.from({ length: 18 }, (_, i) => i * 10);
  const t = extractTile(rgb, 2, 3, 0, 0, 4);
  const red = Array.from(t.subarray(0, 16), (v) => Math.round(v * 255));
  assert.deepEqual(red, [0, 30, 60, 30, 90, 120, 150, 120, 0, 30, 60, 30, 90, 120, 150, 120]);
});
