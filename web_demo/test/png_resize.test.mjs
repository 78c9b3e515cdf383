// PNG decoding / encoding and the alpha channel's bicubic resize, against OpenCV's
// (vectors from test/make_golden.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodePng, encodePng, orient, pngHeader } from '../../src/granular_mobile/web_page/src/png.js';
import { resizeCubicU8 } from '../../src/granular_mobile/web_page/src/resize.js';

const load = (n) => JSON.parse(readFileSync(new URL(`golden/${n}`, import.meta.url), 'utf8'));

for (const c of load('resize.json')) {
  test(`bicubic alpha ${c.h}x${c.w} x${c.scale} equals cv2.INTER_CUBIC`, () => {
    const out = resizeCubicU8(Uint8Array.from(c.src), c.h, c.w, c.h * c.scale, c.w * c.scale);
    assert.deepEqual(Array.from(out), c.dst);
  });
}

for (const c of load('png.json')) {
  test(`PNG ${c.name} decodes as cv2.IMREAD_UNCHANGED and re-encodes losslessly`, async () => {
    const img = await decodePng(Buffer.from(c.png, 'base64'));
    assert.deepEqual([img.height, img.width, ...(img.channels > 1 ? [img.channels] : [])], c.shape);
    assert.deepEqual(Array.from(img.data), c.pixels);
    const again = await decodePng(await encodePng(img));
    assert.deepEqual(again.channels, img.channels);
    assert.deepEqual(Array.from(again.data), c.pixels);
  });
}

test('16-bit PNGs are refused with a message', async () => {
  const png = Buffer.from(load('png.json')[0].png, 'base64');
  png[24] = 16; // IHDR bit depth (the CRC is not checked)
  await assert.rejects(decodePng(png), /16-bit PNG; only 8-bit images/);
});

test('truncated PNG data is refused with a message', async () => {
  const png = Buffer.from(load('png.json')[2].png, 'base64');
  await assert.rejects(decodePng(png.subarray(0, png.length - 40)), /corrupt PNG|truncated/);
  assert.throws(() => pngHeader(Buffer.from('GIF89a')), /not a PNG/);
});

test('EXIF orientations turn the image as imageio.orient does', () => {
  // 2x3 single-channel image: [[0,1,2],[3,4,5]]
  const img = { width: 3, height: 2, channels: 1, data: Uint8Array.from([0, 1, 2, 3, 4, 5]) };
  const want = { 1: [0, 1, 2, 3, 4, 5], 2: [2, 1, 0, 5, 4, 3], 3: [5, 4, 3, 2, 1, 0], 4: [3, 4, 5, 0, 1, 2],
    5: [0, 3, 1, 4, 2, 5], 6: [3, 0, 4, 1, 5, 2], 7: [5, 2, 4, 1, 3, 0], 8: [2, 5, 1, 4, 0, 3] };
  for (const [o, px] of Object.entries(want)) assert.deepEqual(Array.from(orient(img, Number(o)).data), px, `orientation ${o}`);
});
