package org.granularmobile.core;

/**
 * tile -> controller -> each tile on its level's graph -> stitch, as granular_mobile.runtime.Upscaler.
 * The graphs are behind {@link Graphs} (LiteRT interpreters in the app, stand-ins in the tests),
 * so the routing of tiles to levels is tested here without a phone.
 */
public final class TilePipeline {
    /** The exported graphs, on one HWC float tile on [0, 1] (tile x tile x 3). */
    public interface Graphs {
        /** The controller's level (bit-width) for a tile. */
        int controller(float[] tileHwc) throws Exception;

        /** The SR tile (tile*scale)^2 x 3, HWC, unclamped, from level {@code bits}'s graph. */
        float[] sr(float[] tileHwc, int bits) throws Exception;
    }

    /** Progress: {@code done} of {@code total} steps (controller, then SR per tile); {@code what} names the stage. */
    public interface Progress {
        void update(int done, int total, String what);
    }

    /** What a run returns: the HWC uint8 output and each tile's level, with the time per stage. */
    public static final class Result {
        public byte[] rgb;
        public int[] tileBits;
        public long controllerNs, srNs, stitchNs;
    }

    private TilePipeline() { }

    /**
     * Upscale {@code rgb} (height x width x 3, HWC float on [0, 1]) on {@code plan}'s tiles. Tiles run
     * grouped by level in {@code levels}' order, one graph resident at a time.
     */
    public static Result run(float[] rgb, TilePlan plan, int[] levels, Graphs graphs, Progress progress) throws Exception {
        int n = plan.size();
        Result r = new Result();
        r.tileBits = new int[n];
        long t0 = System.nanoTime();
        for (int k = 0; k < n; k++) {
            r.tileBits[k] = graphs.controller(plan.extract(rgb, 3, k));
            progress.update(k + 1, 2 * n, "controller");
        }
        r.controllerNs = System.nanoTime() - t0;
        Stitcher st = new Stitcher(plan, 3);
        int done = 0;
        for (int b : levels) {
            for (int k = 0; k < n; k++) {
                if (r.tileBits[k] != b) continue;
                long a = System.nanoTime();
                float[] sr = graphs.sr(plan.extract(rgb, 3, k), b);
                long m = System.nanoTime();
                st.add(k, sr);
                r.srNs += m - a;
                r.stitchNs += System.nanoTime() - m;
                progress.update(n + ++done, 2 * n, b + "-bit");
            }
        }
        if (done != n) throw new IllegalStateException((n - done) + " tiles took a level the model does not have");
        long a = System.nanoTime();
        r.rgb = st.resultUint8();
        r.stitchNs += System.nanoTime() - a;
        return r;
    }
}
