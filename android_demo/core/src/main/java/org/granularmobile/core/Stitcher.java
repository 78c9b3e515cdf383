package org.granularmobile.core;

/** Weighted accumulation of SR tiles into the output image, as the Python runtime does (float32). */
public final class Stitcher {
    private final TilePlan plan;
    private final int channels, ph, pw;
    private final float[] acc, wsum;
    private final float[][] wy, wx;

    public Stitcher(TilePlan plan, int channels) {
        this.plan = plan;
        this.channels = channels;
        int s = plan.scale;
        this.ph = Math.max(plan.height, plan.tile) * s;
        this.pw = Math.max(plan.width, plan.tile) * s;
        this.acc = new float[ph * pw * channels];
        this.wsum = new float[ph * pw];
        this.wy = TilePlan.axisWeights(plan.ys, plan.tile, plan.height, s, plan.merge);
        this.wx = TilePlan.axisWeights(plan.xs, plan.tile, plan.width, s, plan.merge);
    }

    /** Adds SR tile k: (tile*scale) x (tile*scale) x channels, HWC, float. */
    public void add(int k, float[] srTile) {
        int s = plan.scale, ts = plan.tile * s;
        int iy = k / plan.xs.length, ix = k % plan.xs.length;
        int oy = plan.ys[iy] * s, ox = plan.xs[ix] * s;
        float[] ay = wy[iy], ax = wx[ix];
        for (int y = 0; y < ts; y++) {
            for (int x = 0; x < ts; x++) {
                float w = ay[y] * ax[x];
                int o = (oy + y) * pw + (ox + x);
                int t = (y * ts + x) * channels;
                for (int c = 0; c < channels; c++) acc[o * channels + c] += srTile[t + c] * w;
                wsum[o] += w;
            }
        }
    }

    /** The output, HWC uint8 (as unsigned bytes): clamp(round_half_even(v * 255), 0, 255). */
    public byte[] resultUint8() {
        int s = plan.scale, h = plan.height * s, w = plan.width * s;
        byte[] out = new byte[h * w * channels];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                float ws = wsum[y * pw + x];
                if (ws <= 0f) throw new IllegalStateException("pixel (" + x + ", " + y + ") has no tile");
                for (int c = 0; c < channels; c++) {
                    float v = (acc[(y * pw + x) * channels + c] / ws) * 255.0f;
                    double r = Math.rint(v);
                    out[(y * w + x) * channels + c] = (byte) (int) Math.max(0, Math.min(255, r));
                }
            }
        }
        return out;
    }
}
