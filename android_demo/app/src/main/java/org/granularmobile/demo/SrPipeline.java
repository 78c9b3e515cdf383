package org.granularmobile.demo;

import android.content.res.AssetFileDescriptor;
import android.content.res.AssetManager;
import android.graphics.Bitmap;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.granularmobile.core.BitLevels;
import org.granularmobile.core.Manifest;
import org.granularmobile.core.TilePipeline;
import org.granularmobile.core.TilePlan;
import org.tensorflow.lite.Delegate;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.gpu.GpuDelegate;
import org.tensorflow.lite.nnapi.NnApiDelegate;

/**
 * tile -> controller -> per-level subgraph -> stitch, exactly as granular_mobile.runtime.Upscaler:
 * same static tile, overlap min(6, tile / 4), each tile keeping the centre of its overlaps
 * (granular_mobile/defaults.py: DEFAULT_OVERLAP, DEFAULT_MERGE), thresholds from the manifest.
 * Graphs take NHWC float32 RGB on [0, 1] (batch 1) and return the SR tile, unclamped.
 */
public final class SrPipeline implements AutoCloseable {
    public enum Accel { CPU, NNAPI, GPU }

    /** The runtime's tiling, as granular_mobile/defaults.py (DEFAULT_OVERLAP, DEFAULT_MERGE). */
    public static final int DEFAULT_OVERLAP = 6;
    public static final String DEFAULT_MERGE = "center";

    public interface Progress { void update(int done, int total, String stage); }

    public static final class Result {
        public Bitmap output, bitMap;
        public int[] tileBits;
        public String[] tileLevels;
        /** The tiles' mean time relative to the full graph (a level gate), else NaN. */
        public double cost = Double.NaN;
        public double fab;
        public long controllerMs, srMs, stitchMs;
        public String notice = "";
    }

    private final Manifest manifest;
    private final AssetManager assets;
    private final Map<String, Interpreter> interpreters = new HashMap<>();
    private final List<Delegate> delegates = new ArrayList<>();
    private final Accel accel;
    private final int threads;
    private String notice = "";

    public SrPipeline(AssetManager assets, Accel accel, int threads) throws IOException {
        this.assets = assets;
        this.accel = accel;
        this.threads = threads;
        try (InputStream in = assets.open("model/manifest.json")) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0; ) b.write(buf, 0, n);
            manifest = new Manifest(b.toString(StandardCharsets.UTF_8.name()));
        }
    }

    private MappedByteBuffer map(String name) throws IOException {
        AssetFileDescriptor fd = assets.openFd("model/" + name);
        try (FileInputStream in = new FileInputStream(fd.getFileDescriptor())) {
            return in.getChannel().map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(), fd.getDeclaredLength());
        }
    }

    /** An interpreter on the chosen delegate; if the delegate refuses the graph, CPU with a notice. */
    private Interpreter interpreter(String file) throws IOException {
        Interpreter it = interpreters.get(file);
        if (it != null) return it;
        Interpreter.Options cpu = new Interpreter.Options().setNumThreads(threads);
        if (accel != Accel.CPU) {
            try {
                Delegate d = accel == Accel.NNAPI ? new NnApiDelegate() : new GpuDelegate();
                delegates.add(d);
                it = new Interpreter(map(file), new Interpreter.Options().addDelegate(d).setNumThreads(threads));
            } catch (RuntimeException e) {
                notice = accel + " refused " + file + " (" + e.getMessage() + "): running it on the CPU";
            }
        }
        if (it == null) it = new Interpreter(map(file), cpu);
        interpreters.put(file, it);
        return it;
    }

    private static ByteBuffer input(float[] tileHwc) {
        ByteBuffer b = ByteBuffer.allocateDirect(tileHwc.length * 4).order(ByteOrder.nativeOrder());
        b.asFloatBuffer().put(tileHwc);
        return b;
    }

    /** The level gate's choices' costs, or null without a level gate. */
    public double[] gateCosts() { return manifest.gateCosts; }

    public double defaultBudget() { return manifest.gateBudget; }

    /** {@code budget}: the level gate's mean time per tile relative to the full graph (NaN: the manifest's). */
    public Result run(Bitmap src, double budget, Progress progress) throws IOException {
        int w = src.getWidth(), h = src.getHeight(), t = manifest.tile, s = manifest.scale;
        if (w < 2 || h < 2) throw new IllegalArgumentException("image of " + w + "x" + h + " is too small to upscale");
        int overlap = Math.min(DEFAULT_OVERLAP, t / 4);
        int[] px = new int[w * h];
        src.getPixels(px, 0, w, 0, 0, w, h);
        float[] rgb = new float[w * h * 3];
        for (int i = 0; i < px.length; i++) {
            rgb[3 * i] = ((px[i] >> 16) & 0xff) / 255f;
            rgb[3 * i + 1] = ((px[i] >> 8) & 0xff) / 255f;
            rgb[3 * i + 2] = (px[i] & 0xff) / 255f;
        }
        TilePlan plan = new TilePlan(h, w, t, t - overlap, s, DEFAULT_MERGE);
        int ts = t * s;
        Interpreter ctrl = interpreter(manifest.controllerFile);
        float[][][][] out = new float[1][ts][ts][3];
        TilePipeline.Graphs graphs = new TilePipeline.Graphs() {
            @Override
            public int controller(float[] tile) {
                // controller outputs by name: logits (1, 3), entropy (1,), bits (1,) int32
                Map<Integer, Object> outs = new HashMap<>();
                int[][] bits = new int[1][1];
                for (int o = 0; o < ctrl.getOutputTensorCount(); o++) {
                    int[] shape = ctrl.getOutputTensor(o).shape();
                    if (ctrl.getOutputTensor(o).dataType() == org.tensorflow.lite.DataType.INT32) outs.put(o, bits[0]);
                    else outs.put(o, shape.length == 2 ? new float[1][shape[1]] : new float[shape[0]]);
                }
                ctrl.runForMultipleInputsOutputs(new Object[] {input(tile)}, outs);
                return bits[0][0];
            }

            @Override
            public double[] scores(float[] tile) {
                // the level gate's output by the name the manifest gives it (TFLite names outputs Identity_N)
                Map<Integer, Object> outs = new HashMap<>();
                int want = ctrl.getOutputIndex(manifest.scoresOutput);
                float[][] sc = new float[1][manifest.gateChoices.length];
                for (int o = 0; o < ctrl.getOutputTensorCount(); o++) {
                    int[] shape = ctrl.getOutputTensor(o).shape();
                    if (o == want) outs.put(o, sc);
                    else if (ctrl.getOutputTensor(o).dataType() == org.tensorflow.lite.DataType.INT32) outs.put(o, new int[1]);
                    else outs.put(o, shape.length == 2 ? new float[1][shape[1]] : new float[shape[0]]);
                }
                ctrl.runForMultipleInputsOutputs(new Object[] {input(tile)}, outs);
                double[] d = new double[sc[0].length];
                for (int i = 0; i < d.length; i++) d[i] = sc[0][i];
                return d;
            }

            @Override
            public float[] sr(float[] tile, String level) throws IOException {
                interpreter(manifest.fileForLevel(level)).run(input(tile), out);
                float[] flat = new float[ts * ts * 3];
                for (int y = 0; y < ts; y++)
                    for (int x = 0; x < ts; x++)
                        System.arraycopy(out[0][y][x], 0, flat, (y * ts + x) * 3, 3);
                return flat;
            }
        };
        TilePipeline.Result tr;
        try {
            TilePipeline.Gate gate = manifest.gateChoices == null ? null : new TilePipeline.Gate(manifest.gateChoices,
                    manifest.gateCosts, Double.isNaN(budget) ? manifest.gateBudget : budget);
            tr = TilePipeline.run(rgb, plan, manifest.levels.toArray(new String[0]), manifest.levelBits, gate, graphs,
                    progress::update);
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(e);
        }
        Result r = new Result();
        r.tileBits = tr.tileBits;
        r.tileLevels = tr.tileLevels;
        r.cost = tr.cost;
        r.controllerMs = tr.controllerNs / 1_000_000;
        long srNs = tr.srNs, stNs = tr.stitchNs;
        long a = System.nanoTime();
        byte[] u8 = tr.rgb;
        int ow = w * s, oh = h * s;
        int[] opx = new int[ow * oh];
        for (int i = 0; i < opx.length; i++)
            opx[i] = 0xff000000 | ((u8[3 * i] & 0xff) << 16) | ((u8[3 * i + 1] & 0xff) << 8) | (u8[3 * i + 2] & 0xff);
        r.output = Bitmap.createBitmap(opx, ow, oh, Bitmap.Config.ARGB_8888);
        r.stitchMs = (stNs + System.nanoTime() - a) / 1_000_000;
        r.srMs = srNs / 1_000_000;
        r.fab = BitLevels.fab(r.tileBits);
        r.bitMap = BitMapOverlay.draw(src, plan, r.tileLevels);
        r.notice = notice;
        return r;
    }

    @Override
    public void close() {
        for (Interpreter it : interpreters.values()) it.close();
        for (Delegate d : delegates) if (d instanceof AutoCloseable) try { ((AutoCloseable) d).close(); } catch (Exception ignored) { }
    }
}
