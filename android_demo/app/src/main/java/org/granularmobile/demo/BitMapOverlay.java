package org.granularmobile.demo;

import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Paint;
import org.granularmobile.core.TilePlan;

/** The input tinted by each tile's bit level (same colours as `gdq run --bitmap`). */
final class BitMapOverlay {
    private BitMapOverlay() {}

    static int colour(int bits) {
        switch (bits) {
            case 4: return 0xff0072b2;
            case 5: return 0xff009e73;
            case 6: return 0xffe69f00;
            case 8: return 0xffd55e00;
            default: return 0xff808080;
        }
    }

    static Bitmap draw(Bitmap src, TilePlan plan, int[] tileBits) {
        Bitmap out = src.copy(Bitmap.Config.ARGB_8888, true);
        Canvas c = new Canvas(out);
        Paint p = new Paint();
        float[][] wy = TilePlan.axisWeights(plan.ys, plan.tile, plan.height, 1, "center");
        float[][] wx = TilePlan.axisWeights(plan.xs, plan.tile, plan.width, 1, "center");
        for (int k = 0; k < plan.size(); k++) {
            int iy = k / plan.xs.length, ix = k % plan.xs.length;
            int y0 = plan.ys[iy] + first(wy[iy]), y1 = plan.ys[iy] + last(wy[iy]);
            int x0 = plan.xs[ix] + first(wx[ix]), x1 = plan.xs[ix] + last(wx[ix]);
            p.setColor(colour(tileBits[k]));
            p.setAlpha(115);
            c.drawRect(x0, y0, x1, y1, p);
        }
        return out;
    }

    private static int first(float[] w) { int i = 0; while (i < w.length && w[i] == 0f) i++; return i; }

    private static int last(float[] w) { int i = w.length; while (i > 0 && w[i - 1] == 0f) i--; return i; }
}
