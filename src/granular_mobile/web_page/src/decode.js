// Reading an image file in the page as the Python runtime reads it (imageio.read_image):
// PNGs are decoded here (exact pixels, alpha, grey, EXIF orientation, 16-bit refused);
// other formats (JPEG, WebP, ...) by the browser, upright as their EXIF says.
import { isPng, pngHeader, decodePng, orient, ImageFormatError } from './png.js';
import { checkSize, UpscaleError } from './pipeline.js';

export async function decodeFile(file, scale, maxOutput) {
  const name = file.name || 'image';
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (!bytes.length) throw new UpscaleError(`'${name}' is empty`);
  const bad = () => new UpscaleError(`cannot decode '${name}' (corrupt, empty or unsupported format)`);
  if (isPng(bytes)) {
    let hdr;
    try { hdr = pngHeader(bytes); } catch { throw bad(); }
    checkSize(hdr.width, hdr.height, scale, maxOutput); // before decoding: a huge image costs nothing
    let img;
    try {
      img = await decodePng(bytes);
    } catch (e) {
      if (e instanceof ImageFormatError) throw new UpscaleError(`'${name}': ${e.message}`);
      throw bad();
    }
    if (img) return orient(img, img.orientation);
  }
  let bmp;
  try {
    bmp = await createImageBitmap(new Blob([bytes]), { premultiplyAlpha: 'none', colorSpaceConversion: 'none', imageOrientation: 'from-image' });
  } catch {
    throw bad();
  }
  const { width, height } = bmp;
  checkSize(width, height, scale, maxOutput);
  const cv = new OffscreenCanvas(width, height);
  const ctx = cv.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  let opaque = true;
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 255) { opaque = false; break; }
  if (!opaque) return { width, height, channels: 4, data: new Uint8Array(rgba.buffer) };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) { rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2]; }
  return { width, height, channels: 3, data: rgb };
}

/** RGBA ImageData of an image {width, height, channels, data} (for display). */
export function toImageData(img) {
  const { width, height, channels: c, data } = img;
  const out = new ImageData(width, height);
  const d = out.data;
  for (let i = 0; i < width * height; i++) {
    const g = data[i * c];
    d[4 * i] = g;
    d[4 * i + 1] = c >= 3 ? data[i * c + 1] : g;
    d[4 * i + 2] = c >= 3 ? data[i * c + 2] : g;
    d[4 * i + 3] = c === 4 ? data[i * c + 3] : c === 2 ? data[i * c + 1] : 255;
  }
  return out;
}
