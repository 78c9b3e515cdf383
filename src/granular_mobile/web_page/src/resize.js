// cv2.resize(alpha, (w*s, h*s), interpolation=cv2.INTER_CUBIC) on one uint8 channel: the
// alpha channel of the Python runtime. A port of OpenCV's fixed-point path for 8-bit images
// (resizeGeneric_ with HResizeCubic / VResizeCubic): coefficients in 1/2048 (short), the
// horizontal pass in int, the vertical pass rounded by (v + 2^21) >> 22, borders replicated.
// Tested against cv2 (web_demo/test/png_resize.test.mjs, vectors from web_demo/test/make_golden.py).

const COEF_SCALE = 2048; // INTER_RESIZE_COEF_SCALE
const SIMD_LANES = 8; // v_int16 lanes of OpenCV's baseline (SSE) build

function cvRound(x) { // saturate_cast<short>(float): round half to even
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

function cubicCoeffs(x) {
  const f = Math.fround, A = -0.75;
  // float arithmetic, as interpolateCubic(float x, float* coeffs)
  const c0 = f(f(f(f(f(f(A * f(x + 1)) - f(5 * A)) * f(x + 1)) + f(8 * A)) * f(x + 1)) - f(4 * A));
  const c1 = f(f(f(f(f(f(A + 2) * x) - f(A + 3)) * x) * x) + 1);
  const c2 = f(f(f(f(f(f(A + 2) * f(1 - x)) - f(A + 3)) * f(1 - x)) * f(1 - x)) + 1);
  const c3 = f(f(f(1 - c0) - c1) - c2);
  return [c0, c1, c2, c3].map((c) => cvRound(c * COEF_SCALE));
}

function axisTable(src, dst) {
  const scale = src / dst; // 1 / inv_scale, as double
  const ofs = new Int32Array(dst), coef = [];
  for (let d = 0; d < dst; d++) {
    let fx = Math.fround((d + 0.5) * scale - 0.5);
    const sx = Math.floor(fx);
    fx = Math.fround(fx - sx);
    ofs[d] = sx;
    coef.push(cubicCoeffs(fx));
  }
  return { ofs, coef };
}

const clamp = (i, n) => (i < 0 ? 0 : i >= n ? n - 1 : i);

/** Bicubic resize of one uint8 channel (Uint8Array h*w) to (dh, dw), as cv2.INTER_CUBIC. */
export function resizeCubicU8(src, h, w, dh, dw) {
  const X = axisTable(w, dw), Y = axisTable(h, dh);
  const rows = new Int32Array(h * dw); // horizontal pass of every source row
  for (let y = 0; y < h; y++) {
    for (let d = 0; d < dw; d++) {
      const sx = X.ofs[d], a = X.coef[d];
      let v = 0;
      for (let k = 0; k < 4; k++) v += src[y * w + clamp(sx - 1 + k, w)] * a[k];
      rows[y * dw + d] = v;
    }
  }
  // the vertical pass: OpenCV's SIMD loop (VResizeCubicVec_32s8u, 8 pixels a step with SSE)
  // computes in float, S0*b0 + (S1*b1 + (S2*b2 + S3*b3)) with b = beta / 2^22, rounded half to
  // even; the last dw % 8 pixels of a row go through the fixed-point scalar code
  const f = Math.fround, simd = dw - (dw % SIMD_LANES);
  const out = new Uint8Array(dh * dw);
  for (let d = 0; d < dh; d++) {
    const sy = Y.ofs[d], b = Y.coef[d];
    const r = [0, 1, 2, 3].map((k) => clamp(sy - 1 + k, h) * dw);
    const bf = b.map((v) => f(v / (1 << 22)));
    for (let q = 0; q < dw; q++) {
      const s0 = rows[r[0] + q], s1 = rows[r[1] + q], s2 = rows[r[2] + q], s3 = rows[r[3] + q];
      let v;
      if (q < simd) {
        v = cvRound(f(f(s0 * bf[0]) + f(f(s1 * bf[1]) + f(f(s2 * bf[2]) + f(s3 * bf[3])))));
      } else { // int arithmetic: the sum fits in 32 bits (255 * 2048 * 2048 * ~1.6)
        v = Math.floor((s0 * b[0] + s1 * b[1] + s2 * b[2] + s3 * b[3] + (1 << 21)) / (1 << 22));
      }
      out[d * dw + q] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}
