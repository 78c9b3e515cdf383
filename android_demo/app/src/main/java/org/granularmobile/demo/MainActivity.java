package org.granularmobile.demo;

import android.app.Activity;
import android.content.ContentValues;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.provider.MediaStore;
import android.widget.Button;
import android.widget.CheckBox;
import android.widget.EditText;
import android.widget.ProgressBar;
import android.widget.SeekBar;
import android.widget.Spinner;
import android.widget.TextView;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

public final class MainActivity extends Activity {
    private static final int PICK = 1;
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());
    private Bitmap input;
    private SrPipeline.Result result;
    private CompareView compare;
    private TextView status;
    private ProgressBar progress;
    /** The level gate's budget chosen on the slider (NaN: the model has no level gate). */
    private double budget = Double.NaN;

    @Override protected void onCreate(Bundle b) {
        super.onCreate(b);
        setContentView(R.layout.activity_main);
        compare = findViewById(R.id.compare);
        status = findViewById(R.id.status);
        progress = findViewById(R.id.progress);
        try (InputStream in = getAssets().open("sample.png")) {  // bundled sample (optional)
            input = BitmapFactory.decodeStream(in);
            compare.setImages(input, null);
        } catch (Exception ignored) { }
        ((Button) findViewById(R.id.pick)).setOnClickListener(v -> {
            Intent i = new Intent(Intent.ACTION_GET_CONTENT).setType("image/*");
            startActivityForResult(Intent.createChooser(i, "Pick an image"), PICK);
        });
        ((Button) findViewById(R.id.run)).setOnClickListener(v -> run());
        ((Button) findViewById(R.id.save)).setOnClickListener(v -> save());
        ((CheckBox) findViewById(R.id.showBits)).setOnCheckedChangeListener((v, on) -> show(on));
        ((SeekBar) findViewById(R.id.slider)).setOnSeekBarChangeListener(new SeekBar.OnSeekBarChangeListener() {
            @Override public void onProgressChanged(SeekBar s, int p, boolean u) { compare.setSplit(p / 100f); }
            @Override public void onStartTrackingTouch(SeekBar s) { }
            @Override public void onStopTrackingTouch(SeekBar s) { }
        });
        setupBudget();
    }

    /** The time-budget slider, from the cheapest choice's cost to the dearest's, at the manifest's default. */
    private void setupBudget() {
        double[] costs;
        double dflt;
        try (SrPipeline p = new SrPipeline(getAssets(), SrPipeline.Accel.CPU, 1)) {
            costs = p.gateCosts();
            dflt = p.defaultBudget();
        } catch (Exception e) {
            return;
        }
        if (costs == null) return;
        double lo = costs[0], hi = costs[costs.length - 1];
        budget = dflt;
        findViewById(R.id.budgetRow).setVisibility(android.view.View.VISIBLE);
        SeekBar bar = findViewById(R.id.budget);
        TextView label = findViewById(R.id.budgetText);
        bar.setProgress((int) Math.round(100 * (dflt - lo) / (hi - lo)));
        label.setText(String.format(Locale.US, "Time budget %.2f", dflt));
        bar.setOnSeekBarChangeListener(new SeekBar.OnSeekBarChangeListener() {
            @Override public void onProgressChanged(SeekBar s, int p, boolean u) {
                budget = lo + (hi - lo) * p / 100.0;
                label.setText(String.format(Locale.US, "Time budget %.2f", budget));
            }
            @Override public void onStartTrackingTouch(SeekBar s) { }
            @Override public void onStopTrackingTouch(SeekBar s) { }
        });
    }

    @Override protected void onActivityResult(int req, int code, Intent data) {
        super.onActivityResult(req, code, data);
        if (req != PICK || code != RESULT_OK || data == null) return;
        try (InputStream in = getContentResolver().openInputStream(data.getData())) {
            BitmapFactory.Options o = new BitmapFactory.Options();
            o.inPreferredConfig = Bitmap.Config.ARGB_8888;  // 8-bit RGB(A), as the runtime expects
            input = BitmapFactory.decodeStream(in, null, o);
            if (input == null) throw new IllegalArgumentException("cannot decode this image");
            result = null;
            compare.setImages(input, null);
            status.setText(String.format(Locale.US, "%d x %d", input.getWidth(), input.getHeight()));
        } catch (Exception e) {
            status.setText("error: " + e.getMessage());
        }
    }

    private void run() {
        if (input == null) { status.setText("pick an image first"); return; }
        SrPipeline.Accel accel = SrPipeline.Accel.values()[((Spinner) findViewById(R.id.delegate)).getSelectedItemPosition()];
        int threads = Math.max(1, Integer.parseInt("0" + ((EditText) findViewById(R.id.threads)).getText()));
        Bitmap src = input;
        double b = budget;
        status.setText("running...");
        worker.submit(() -> {
            try (SrPipeline p = new SrPipeline(getAssets(), accel, threads)) {
                SrPipeline.Result r = p.run(src, b, (d, n, stage) -> ui.post(() -> { progress.setMax(n); progress.setProgress(d); }));
                ui.post(() -> {
                    result = r;
                    show(((CheckBox) findViewById(R.id.showBits)).isChecked());
                    String time = Double.isNaN(r.cost) ? "" : String.format(Locale.US, " time %.2f of the full graph's,", r.cost);
                    status.setText(String.format(Locale.US, "%s%s FAB %.2f | controller %d ms, SR %d ms, stitch %d ms %s",
                            accel, time, r.fab, r.controllerMs, r.srMs, r.stitchMs, r.notice));
                });
            } catch (Exception e) {
                ui.post(() -> status.setText("error: " + e.getMessage()));
            }
        });
    }

    private void show(boolean bits) {
        if (result != null) compare.setImages(bits ? result.bitMap : input, result.output);
    }

    private void save() {
        if (result == null) { status.setText("nothing to save yet"); return; }
        ContentValues v = new ContentValues();
        v.put(MediaStore.Images.Media.DISPLAY_NAME, "granular_dq_" + System.currentTimeMillis() + ".png");
        v.put(MediaStore.Images.Media.MIME_TYPE, "image/png");
        Uri uri = getContentResolver().insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, v);
        try (OutputStream out = getContentResolver().openOutputStream(uri)) {
            result.output.compress(Bitmap.CompressFormat.PNG, 100, out);
            status.setText("saved to the gallery");
        } catch (Exception e) {
            status.setText("error: " + e.getMessage());
        }
    }

    @Override protected void onDestroy() { worker.shutdownNow(); super.onDestroy(); }
}
