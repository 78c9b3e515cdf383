package org.granularmobile.demo;

import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Paint;
import org.granularmobile.core.LevelColours;
import org.granularmobile.core.TilePlan;

/** The input tinted by each tile's level (the colours of `gdq run --bitmap`, from the core). */
final class BitMapOverlay {
    private BitMapOverlay() {}

    static Bitmap draw(Bitmap src, TilePlan plan, String[] tileLevels) {
        Bitmap out = src.copy(Bitmap.Config.ARGB_8888, true);
        Canvas c = new Canvas(out);
        Paint p = new Paint();
        float[][] wy = TilePlan.axisWeights(plan.ys, plan.tile, plan.height, 1, "center");
        float[][] wx = TilePlan.axisWeights(plan.xs, plan.tile, plan.width, 1, "center");
        for (int k = 0; k < plan.size(); k++) {
            int iy = k / plan.xs.length, ix = k % plan.xs.length;
            int y0 = plan.ys[iy] + first(wy[iy]), y1 = plan.ys[iy] + last(wy[iy]);
            int x0 = plan.xs[ix] + first(wx[ix]), x1 = plan.xs[ix] + last(wx[ix]);
            p.setColor(LevelColours.argb(tileLevels[k]));
            p.setAlpha(115);
            c.drawRect(x0, y0, x1, y1, p);
        }
        return out;
    }

    private static int first(float[] w) { int i = 0; while (i < w.length && w[i] == 0f) i++; return i; }

    private static int last(float[] w) { int i = w.length; while (i > 0 && w[i - 1] == 0f) i--; return i; }
}
