package org.granularmobile.core;

/**
 * Static-shape tiling plan, a port of granular_mobile.runtime.tiler (Python): tiles start every
 * {@code step} pixels, the last one along an axis ends at the border, an image smaller than a tile
 * is reflect-padded. Weights are float32 computed in the same order as numpy's, so stitched
 * outputs match the Python runtime bit for bit.
 */
public final class TilePlan {
    public final int height, width, tile, step, scale;
    public final String merge;
    public final int[] ys, xs;

    public TilePlan(int height, int width, int tile, int step, int scale, String merge) {
        if (height < 1 || width < 1) throw new IllegalArgumentException("empty image " + width + "x" + height);
        if (step < 1 || step > tile) throw new IllegalArgumentException("step " + step + " must be in 1.." + tile);
        if (!merge.equals("blend") && !merge.equals("center"))
            throw new IllegalArgumentException("merge '" + merge + "' is unknown; valid: blend, center");
        this.height = height; this.width = width; this.tile = tile; this.step = step; this.scale = scale; this.merge = merge;
        this.ys = axisPositions(height, tile, step);
        this.xs = axisPositions(width, tile, step);
    }

    public int size() { return ys.length * xs.length; }

    /** Top-left LR corner (y, x) of tile k (row-major over ys, xs). */
    public int[] position(int k) { return new int[] {ys[k / xs.length], xs[k % xs.length]}; }

    public static int[] axisPositions(int length, int tile, int step) {
        if (length <= tile) return new int[] {0};
        int n = (length - tile + step - 1) / step + 1;
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = Math.min(i * step, length - tile);
        return p;
    }

    /** Per-tile weights along one axis, in output pixels (tile * scale each). */
    public static float[][] axisWeights(int[] pos, int tile, int length, int scale, String mode) {
        int t = tile * scale, n = pos.length, span = Math.min(length, tile);
        float[][] out = new float[n][];
        for (int i = 0; i < n; i++) {
            float[] w = new float[t];
            int p = pos[i];
            if (mode.equals("center")) {
                int lo = i == 0 ? 0 : Math.floorDiv(pos[i - 1] + tile + p, 2);
                int hi = i == n - 1 ? p + span : Math.floorDiv(p + tile + pos[i + 1], 2);
                for (int j = (lo - p) * scale; j < (hi - p) * scale; j++) w[j] = 1.0f;
            } else {
                for (int j = 0; j < span * scale; j++) w[j] = 1.0f;
                if (i > 0) {
                    int ov = (pos[i - 1] + tile - p) * scale;
                    for (int j = 0; j < ov; j++) w[j] = ((float) j + 0.5f) / (float) ov;
                }
                if (i < n - 1) {
                    int ov = (p + tile - pos[i + 1]) * scale;
                    for (int j = 0; j < ov; j++) {
                        float down = 1.0f - ((float) j + 0.5f) / (float) ov;
                        w[t - ov + j] = Math.min(w[t - ov + j], down);
                    }
                }
            }
            out[i] = w;
        }
        return out;
    }

    /** Index into an axis of length n with numpy's "reflect" padding (edge for n == 1). */
    public static int reflect(int i, int n) {
        if (n == 1) return 0;
        int period = 2 * (n - 1);
        int m = Math.floorMod(i, period);
        return m >= n ? period - m : m;
    }

    /**
     * Tile k of an interleaved HWC float image (values as the model expects), reflect-padded where
     * the image is smaller than a tile. Returns tile x tile x channels, HWC.
     */
    public float[] extract(float[] image, int channels, int k) {
        int[] yx = position(k);
        float[] out = new float[tile * tile * channels];
        for (int y = 0; y < tile; y++) {
            int sy = reflect(yx[0] + y, height);
            for (int x = 0; x < tile; x++) {
                int sx = reflect(yx[1] + x, width);
                System.arraycopy(image, (sy * width + sx) * channels, out, (y * tile + x) * channels, channels);
            }
        }
        return out;
    }
}
