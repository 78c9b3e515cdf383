package org.granularmobile.core;

import java.util.Map;

/**
 * tile -> controller -> each tile on its level's graph -> stitch, as granular_mobile.runtime.Upscaler.
 * The graphs are behind {@link Graphs} (LiteRT interpreters in the app, stand-ins in the tests),
 * so the routing of tiles to levels is tested here without a phone. Levels are named (a6, a6k4);
 * with a level gate the controller scores every tile first and the image's budget picks the
 * levels ({@link Budget}), else the controller's bit-width picks the full-depth level a&lt;bits&gt;.
 */
public final class TilePipeline {
    /** The exported graphs, on one HWC float tile on [0, 1] (tile x tile x 3). */
    public interface Graphs {
        /** The controller's bit-width for a tile (GBC + E2B). */
        int controller(float[] tileHwc) throws Exception;

        /** The level gate's predicted gain of each choice for a tile (a model with a level gate). */
        double[] scores(float[] tileHwc) throws Exception;

        /** The SR tile (tile*scale)^2 x 3, HWC, unclamped, from {@code level}'s graph. */
        float[] sr(float[] tileHwc, String level) throws Exception;
    }

    /** Progress: {@code done} of {@code total} steps (controller, then SR per tile); {@code what} names the stage. */
    public interface Progress {
        void update(int done, int total, String what);
    }

    /** The level gate: its choices (cheapest first), their costs, and the budget of this run. */
    public static final class Gate {
        public final String[] choices;
        public final double[] costs;
        public final double budget;

        public Gate(String[] choices, double[] costs, double budget) {
            Budget.check(budget, costs);
            this.choices = choices;
            this.costs = costs;
            this.budget = budget;
        }
    }

    /** What a run returns: the HWC uint8 output, each tile's level and bits, the mean cost, the time per stage. */
    public static final class Result {
        public byte[] rgb;
        public String[] tileLevels;
        public int[] tileBits;
        /** The tiles' mean cost relative to the full graph (a level gate), else NaN. */
        public double cost = Double.NaN;
        public long controllerNs, srNs, stitchNs;
    }

    private TilePipeline() { }

    /**
     * Upscale {@code rgb} (height x width x 3, HWC float on [0, 1]) on {@code plan}'s tiles. Tiles run
     * grouped by level in {@code levels}' order, one graph resident at a time. {@code gate}: null for
     * the bit controller.
     */
    public static Result run(float[] rgb, TilePlan plan, String[] levels, Map<String, Integer> levelBits, Gate gate,
                             Graphs graphs, Progress progress) throws Exception {
        int n = plan.size();
        Result r = new Result();
        r.tileLevels = new String[n];
        r.tileBits = new int[n];
        long t0 = System.nanoTime();
        if (gate != null) {
            double[][] scores = new double[n][];
            for (int k = 0; k < n; k++) {
                scores[k] = graphs.scores(plan.extract(rgb, 3, k));
                progress.update(k + 1, 2 * n, "controller");
            }
            int[] ch = Budget.allocate(scores, gate.costs, gate.budget);
            double c = 0;
            for (int k = 0; k < n; k++) {
                r.tileLevels[k] = gate.choices[ch[k]];
                c += gate.costs[ch[k]];
            }
            r.cost = c / n;
        } else {
            for (int k = 0; k < n; k++) {
                r.tileLevels[k] = "a" + graphs.controller(plan.extract(rgb, 3, k));
                progress.update(k + 1, 2 * n, "controller");
            }
        }
        r.controllerNs = System.nanoTime() - t0;
        Stitcher st = new Stitcher(plan, 3);
        int done = 0;
        for (String lv : levels) {
            for (int k = 0; k < n; k++) {
                if (!lv.equals(r.tileLevels[k])) continue;
                long a = System.nanoTime();
                float[] sr = graphs.sr(plan.extract(rgb, 3, k), lv);
                long m = System.nanoTime();
                st.add(k, sr);
                r.srNs += m - a;
                r.stitchNs += System.nanoTime() - m;
                r.tileBits[k] = levelBits.get(lv);
                progress.update(n + ++done, 2 * n, lv);
            }
        }
        if (done != n) throw new IllegalStateException((n - done) + " tiles took a level the model does not have");
        long a = System.nanoTime();
        r.rgb = st.resultUint8();
        r.stitchNs += System.nanoTime() - a;
        return r;
    }
}
