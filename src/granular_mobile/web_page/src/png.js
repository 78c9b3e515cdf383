// PNG decoding and encoding without a canvas: a 2-D canvas stores premultiplied alpha, which
// changes the colour of semi-transparent pixels (and zeroes it under alpha 0), so PNGs are read
// and written here to keep the exact pixels the Python runtime (OpenCV) reads and writes.
// Uses (De)CompressionStream('deflate') (zlib): browsers and Node >= 18.

export class ImageFormatError extends Error {}

const SIG = [137, 80, 78, 71, 13, 10, 26, 10];

export function isPng(bytes) {
  return bytes.length >= 8 && SIG.every((v, i) => bytes[i] === v);
}

async function pump(stream, data) {
  const out = new Response(new Blob([data]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}

const u32 = (b, i) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;

/** Width, height, bit depth, colour type and interlace of a PNG from its IHDR (no decoding). */
export function pngHeader(bytes) {
  if (!isPng(bytes) || bytes.length < 33) throw new ImageFormatError('not a PNG file');
  return { width: u32(bytes, 16), height: u32(bytes, 20), depth: bytes[24], colorType: bytes[25], interlace: bytes[28] };
}

/**
 * Decode an 8-bit (or 1/2/4-bit grey or palette) non-interlaced PNG as OpenCV's
 * IMREAD_UNCHANGED does: grey -> 1 channel, grey+alpha -> 4 (R = G = B), RGB -> 3,
 * palette -> 3 (4 with a tRNS chunk), RGBA -> 4. Returns {width, height, channels, data,
 * orientation} or null for a PNG this decoder leaves to the browser (interlaced).
 * 16-bit PNGs are refused, as the Python runtime refuses them.
 */
export async function decodePng(bytes) {
  const hdr = pngHeader(bytes);
  const { width, height, depth, colorType, interlace } = hdr;
  if (depth === 16) {
    throw new ImageFormatError('this is a 16-bit PNG; only 8-bit images are supported: convert it to 8-bit first');
  }
  if (interlace) return null;
  const inCh = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  if (!inCh || (depth !== 8 && !(depth < 8 && (colorType === 0 || colorType === 3)))) {
    throw new ImageFormatError(`unsupported PNG (bit depth ${depth}, colour type ${colorType})`);
  }
  let i = 8, palette = null, trns = null, orientation = 1;
  const idat = [];
  while (i + 8 <= bytes.length) {
    const size = u32(bytes, i), kind = String.fromCharCode(...bytes.subarray(i + 4, i + 8));
    const body = bytes.subarray(i + 8, i + 8 + size);
    if (kind === 'PLTE') palette = body;
    else if (kind === 'tRNS') trns = body;
    else if (kind === 'IDAT') idat.push(body);
    else if (kind === 'eXIf') orientation = exifOrientation(body);
    else if (kind === 'IEND') break;
    i += 12 + size;
  }
  if (!idat.length) throw new ImageFormatError('PNG without image data (truncated or corrupt file)');
  let raw;
  try {
    raw = await pump(new DecompressionStream('deflate'), new Blob(idat));
  } catch {
    throw new ImageFormatError('corrupt PNG data (truncated or damaged file)');
  }
  const bpp = Math.max(1, (inCh * depth) >> 3); // bytes per complete pixel, for the filters
  const stride = Math.ceil((width * inCh * depth) / 8);
  if (raw.length < height * (stride + 1)) throw new ImageFormatError('corrupt PNG data (truncated file)');
  const rows = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const ft = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = rows.subarray(y * stride, (y + 1) * stride);
    const prev = y ? rows.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? cur[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
      let p;
      switch (ft) {
        case 0: p = 0; break;
        case 1: p = a; break;
        case 2: p = b; break;
        case 3: p = (a + b) >> 1; break;
        case 4: { const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
          p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; break; }
        default: throw new ImageFormatError(`corrupt PNG data (filter ${ft})`);
      }
      cur[x] = (src[x] + p) & 255;
    }
  }
  const sample = (y, x) => { // one sample of a <= 8-bit single-channel row
    if (depth === 8) return rows[y * stride + x];
    const bit = x * depth, byte = rows[y * stride + (bit >> 3)];
    return (byte >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
  };
  const n = width * height;
  let channels, data;
  if (colorType === 3) {
    if (!palette) throw new ImageFormatError('palette PNG without a palette (corrupt file)');
    channels = trns ? 4 : 3;
    data = new Uint8Array(n * channels);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const k = sample(y, x), o = (y * width + x) * channels;
      data[o] = palette[3 * k]; data[o + 1] = palette[3 * k + 1]; data[o + 2] = palette[3 * k + 2];
      if (trns) data[o + 3] = k < trns.length ? trns[k] : 255;
    }
  } else if (colorType === 0) {
    channels = 1;
    data = new Uint8Array(n);
    const mul = 255 / ((1 << depth) - 1);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = sample(y, x) * mul;
  } else if (colorType === 4) {
    channels = 4;
    data = new Uint8Array(n * 4);
    for (let k = 0; k < n; k++) {
      data[4 * k] = data[4 * k + 1] = data[4 * k + 2] = rows[2 * k];
      data[4 * k + 3] = rows[2 * k + 1];
    }
  } else {
    channels = inCh;
    data = rows;
  }
  return { width, height, channels, data, orientation };
}

/** EXIF orientation (1..8) from a TIFF-structured EXIF blob (1 when absent). */
export function exifOrientation(tiff) {
  if (tiff.length < 8) return 1;
  const le = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!le && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return 1;
  const dv = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  try {
    const ifd = dv.getUint32(4, le), n = dv.getUint16(ifd, le);
    for (let k = 0; k < n; k++) {
      const e = ifd + 2 + 12 * k;
      if (dv.getUint16(e, le) === 0x0112 && dv.getUint16(e + 2, le) === 3) {
        const v = dv.getUint16(e + 8, le);
        return v >= 1 && v <= 8 ? v : 1;
      }
    }
  } catch { /* truncated: no orientation */ }
  return 1;
}

/** Apply an EXIF orientation to an image {width, height, channels, data} (what a viewer shows). */
export function orient(img, o) {
  if (o === 1) return img;
  const { width: w, height: h, channels: c, data } = img;
  const t = [5, 6, 7, 8].includes(o), fx = [2, 3, 6, 7].includes(o), fy = [3, 4, 7, 8].includes(o);
  const W = t ? h : w, H = t ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const yy = fy ? H - 1 - y : y, xx = fx ? W - 1 - x : x; // flips after the transpose
    const sy = t ? xx : yy, sx = t ? yy : xx;
    out.set(data.subarray((sy * w + sx) * c, (sy * w + sx + 1) * c), (y * W + x) * c);
  }
  return { ...img, width: W, height: H, data: out };
}

let CRC;
function crc32(parts) {
  if (!CRC) {
    CRC = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (const p of parts) for (let i = 0; i < p.length; i++) c = CRC[(c ^ p[i]) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(kind, body) {
  const out = new Uint8Array(12 + body.length), dv = new DataView(out.buffer);
  const k = Uint8Array.from(kind, (ch) => ch.charCodeAt(0));
  dv.setUint32(0, body.length);
  out.set(k, 4);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32([k, body]));
  return out;
}

/** Encode an 8-bit image (1: grey, 2: grey+alpha, 3: RGB, 4: RGBA channels) as PNG bytes. */
export async function encodePng({ width, height, channels, data }) {
  const type = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels];
  const stride = width * channels;
  const raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const z = await pump(new CompressionStream('deflate'), raw);
  const ihdr = new Uint8Array(13), dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, type, 0, 0, 0], 8);
  const parts = [Uint8Array.from(SIG), chunk('IHDR', ihdr), chunk('IDAT', z), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
