package org.granularmobile.demo;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Matrix;
import android.graphics.Paint;
import android.graphics.Rect;
import android.util.AttributeSet;
import android.view.MotionEvent;
import android.view.ScaleGestureDetector;
import android.view.View;

/** Input (left of the slider, upscaled for display) vs output (right), pinch to zoom, drag to pan. */
public final class CompareView extends View {
    private Bitmap left, right;
    private float split = 0.5f, zoom = 1f, panX, panY, lastX, lastY;
    private final Paint line = new Paint();
    private final Paint smooth = new Paint(Paint.FILTER_BITMAP_FLAG);
    private final ScaleGestureDetector scaler;

    public CompareView(Context c, AttributeSet a) {
        super(c, a);
        line.setColor(0xffffffff);
        line.setStrokeWidth(3f);
        scaler = new ScaleGestureDetector(c, new ScaleGestureDetector.SimpleOnScaleGestureListener() {
            @Override public boolean onScale(ScaleGestureDetector d) {
                zoom = Math.max(1f, Math.min(16f, zoom * d.getScaleFactor()));
                invalidate();
                return true;
            }
        });
    }

    public void setImages(Bitmap input, Bitmap output) { left = input; right = output; invalidate(); }

    public void setSplit(float s) { split = s; invalidate(); }

    @Override public boolean onTouchEvent(MotionEvent e) {
        scaler.onTouchEvent(e);
        if (e.getActionMasked() == MotionEvent.ACTION_DOWN) { lastX = e.getX(); lastY = e.getY(); }
        else if (e.getActionMasked() == MotionEvent.ACTION_MOVE && !scaler.isInProgress()) {
            panX += e.getX() - lastX; panY += e.getY() - lastY; lastX = e.getX(); lastY = e.getY(); invalidate();
        }
        return true;
    }

    @Override protected void onDraw(Canvas c) {
        if (right == null && left == null) return;
        Bitmap ref = right != null ? right : left;
        float fit = Math.min(getWidth() / (float) ref.getWidth(), getHeight() / (float) ref.getHeight()) * zoom;
        Matrix m = new Matrix();
        m.postScale(fit, fit);
        m.postTranslate(panX, panY);
        int cut = (int) (getWidth() * split);
        if (left != null) {
            c.save();
            c.clipRect(new Rect(0, 0, cut, getHeight()));
            Matrix ml = new Matrix(m);
            ml.preScale(ref.getWidth() / (float) left.getWidth(), ref.getHeight() / (float) left.getHeight());
            c.drawBitmap(left, ml, smooth);
            c.restore();
        }
        if (right != null) {
            c.save();
            c.clipRect(new Rect(cut, 0, getWidth(), getHeight()));
            c.drawBitmap(right, m, smooth);
            c.restore();
        }
        c.drawLine(cut, 0, cut, getHeight(), line);
    }
}
