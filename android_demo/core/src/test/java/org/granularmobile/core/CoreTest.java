package org.granularmobile.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The Java core must reproduce the Python runtime's golden vectors exactly. */
public class CoreTest {
    static final Path GOLDEN = Paths.get(System.getProperty("golden.dir", "src/test/resources/golden"));
    static final Path MANIFEST = Paths.get(System.getProperty("manifest.path",
            "../../src/granular_mobile/assets/export/manifest.json"));

    static String read(Path p) throws IOException { return new String(Files.readAllBytes(p), StandardCharsets.UTF_8); }

    static int[] ints(Object o) {
        List<?> l = (List<?>) o;
        int[] a = new int[l.size()];
        for (int i = 0; i < a.length; i++) a[i] = ((Double) l.get(i)).intValue();
        return a;
    }

    static double[] doubles(Object o) {
        List<?> l = (List<?>) o;
        double[] a = new double[l.size()];
        for (int i = 0; i < a.length; i++) a[i] = (Double) l.get(i);
        return a;
    }

    /** Tile k's synthetic SR content, as granular_mobile.runtime.golden.synthetic_tile writes it. */
    static float[] syntheticTile(int k, int size, int channels) {
        float[] t = new float[size * size * channels];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                for (int c = 0; c < channels; c++)
                    t[(y * size + x) * channels + c] = (float) (((k * 7 + y * 3 + x * 5 + c) % 256) / 255.0);
        return t;
    }

    static String sha256(byte[] b) throws Exception {
        StringBuilder s = new StringBuilder();
        for (byte x : MessageDigest.getInstance("SHA-256").digest(b)) s.append(String.format("%02x", x));
        return s.toString();
    }

    @Test
    @SuppressWarnings("unchecked")
    public void tilingAndStitchingMatchPythonExactly() throws Exception {
        Map<String, Object> g = (Map<String, Object>) Json.parse(read(GOLDEN.resolve("tiling.json")));
        List<Object> cases = (List<Object>) g.get("cases");
        assertTrue(cases.size() >= 5);
        for (Object o : cases) {
            Map<String, Object> c = (Map<String, Object>) o;
            int h = ints(List.of(c.get("height")))[0], w = ints(List.of(c.get("width")))[0];
            int tile = ints(List.of(c.get("tile")))[0], ov = ints(List.of(c.get("overlap")))[0];
            int s = ints(List.of(c.get("scale")))[0];
            String merge = (String) c.get("merge");
            TilePlan plan = new TilePlan(h, w, tile, tile - ov, s, merge);
            String id = h + "x" + w + "/" + tile + "/" + ov + "/" + merge;
            assertArrayEquals(id, ints(c.get("ys")), plan.ys);
            assertArrayEquals(id, ints(c.get("xs")), plan.xs);
            float[][] wy = TilePlan.axisWeights(plan.ys, tile, h, s, merge);
            List<Object> gw = (List<Object>) c.get("weights_y");
            for (int i = 0; i < wy.length; i++) {
                List<Object> row = (List<Object>) gw.get(i);
                for (int j = 0; j < row.size(); j++)
                    assertEquals(id + " weight", (float) (double) (Double) row.get(j), wy[i][j], 0.0f);
            }
            Stitcher st = new Stitcher(plan, 3);
            for (int k = 0; k < plan.size(); k++) st.add(k, syntheticTile(k, tile * s, 3));
            byte[] out = st.resultUint8();
            int[] head = ints(c.get("output_head"));
            for (int i = 0; i < head.length; i++) assertEquals(id + " byte " + i, head[i], out[i] & 0xff);
            assertEquals(id, c.get("output_sha256"), sha256(out));
        }
    }

    @Test
    public void reflectPaddingMatchesNumpy() {
        // numpy.pad(np.arange(4), (0, 9), mode="reflect") -> 0 1 2 3 2 1 0 1 2 3 2 1 0
        int[] want = {0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0};
        for (int i = 0; i < want.length; i++) assertEquals(want[i], TilePlan.reflect(i, 4));
        assertEquals(0, TilePlan.reflect(5, 1));
        TilePlan p = new TilePlan(3, 2, 4, 4, 2, "blend");
        float[] img = {1, 2, 3, 4, 5, 6};  // 3x2, one channel
        float[] t = p.extract(img, 1, 0);
        assertArrayEquals(new float[] {1, 2, 1, 2, 3, 4, 3, 4, 5, 6, 5, 6, 3, 4, 3, 4}, t, 0f);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void controllerRuleMatchesExportedGraph() throws Exception {
        Path p = GOLDEN.resolve("controller.json");
        Map<String, Object> g = (Map<String, Object>) Json.parse(read(p));
        double[] th = {(Double) ((List<Object>) g.get("thresholds")).get(0), (Double) ((List<Object>) g.get("thresholds")).get(1)};
        int[] gbc = ints(g.get("gbc_bits")), e2b = ints(g.get("e2b_bits")), bits = ints(g.get("bits"));
        List<Object> logits = (List<Object>) g.get("logits"), ent = (List<Object>) g.get("entropy");
        assertTrue(bits.length >= 16);
        for (int i = 0; i < bits.length; i++) {
            List<Object> l = (List<Object>) logits.get(i);
            float[] lf = {(float) (double) (Double) l.get(0), (float) (double) (Double) l.get(1), (float) (double) (Double) l.get(2)};
            assertEquals("tile " + i, bits[i], BitLevels.finalBits(lf, (float) (double) (Double) ent.get(i), th, gbc, e2b));
        }
        assertEquals(5.25, BitLevels.fab(new int[] {4, 4, 8, 5}), 1e-12);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void gateAllocationMatchesPythonOnTheExportedScores() throws Exception {
        Map<String, Object> g = (Map<String, Object>) Json.parse(read(GOLDEN.resolve("controller.json")));
        Manifest m = new Manifest(read(MANIFEST));
        if (m.gateChoices == null) {
            assertTrue(!g.containsKey("levels"));
            return;
        }
        List<Object> rows = (List<Object>) g.get("scores");
        double[][] scores = new double[rows.size()][];
        for (int i = 0; i < scores.length; i++) {
            List<Object> r = (List<Object>) rows.get(i);
            scores[i] = new double[r.size()];
            for (int j = 0; j < r.size(); j++) scores[i][j] = (Double) r.get(j);
        }
        // the golden file's gate is the shipped manifest's (the app reads the manifest)
        assertArrayEquals(m.gateCosts, doubles(g.get("gate_costs")), 0.0);
        assertEquals(m.gateBudget, (Double) g.get("gate_budget"), 0.0);
        int[] want = ints(g.get("levels"));
        assertArrayEquals(want, Budget.allocate(scores, m.gateCosts, m.gateBudget));
        java.util.Set<Integer> seen = new java.util.HashSet<>();
        for (int w : want) seen.add(w);
        assertTrue("the golden tiles take several levels", seen.size() >= 2);
    }

    @Test
    @SuppressWarnings("unchecked")
    public void levelColoursMatchPython() throws Exception {
        Map<String, Object> g = (Map<String, Object>) Json.parse(read(GOLDEN.resolve("colours.json")));
        assertTrue(g.size() >= 10);
        for (Map.Entry<String, Object> e : g.entrySet())
            assertArrayEquals(e.getKey(), ints(e.getValue()), LevelColours.rgb(e.getKey()));
        assertEquals(0xff56b4e9, LevelColours.argb("a6k4"));
    }

    @Test
    public void manifestOfTheShippedExport() throws Exception {
        Manifest m = new Manifest(read(MANIFEST));
        assertEquals(2, m.scale);
        assertEquals(96, m.tile);
        assertArrayEquals(new int[] {4, 5, 6, 8}, m.bits);
        assertTrue(m.thresholds[0] < m.thresholds[1]);
        for (int b : m.bits) {
            assertTrue(m.fileForBits(b).endsWith(".tflite"));
            assertEquals(64, m.sha256.get(m.fileForBits(b)).length());
        }
        assertTrue(m.controllerFile.endsWith(".tflite"));
    }

    static final java.util.Map<String, Integer> DARKEN = java.util.Map.of("a4", 4, "a5", 5, "a6", 6, "a4k1", 7);
    static final java.util.Map<String, Integer> BITS = java.util.Map.of("a4", 4, "a5", 5, "a6", 6, "a4k1", 4);
    static final String[] LEVELS = {"a4", "a5", "a6", "a4k1"};

    /** Stand-in graphs: the level from a tile's mean; a level's SR says which level made it. */
    static final class FakeGraphs implements TilePipeline.Graphs {
        final int tile, scale;

        FakeGraphs(int tile, int scale) { this.tile = tile; this.scale = scale; }

        @Override
        public int controller(float[] t) {
            double m = 0;
            for (float v : t) m += v;
            m /= t.length;
            return m < 0.3 ? 4 : m < 0.6 ? 5 : 6;
        }

        @Override
        public double[] scores(float[] t) {  // busier (brighter) tiles gain more from dearer levels
            double m = 0;
            for (float v : t) m += v;
            m /= t.length;
            return new double[] {0, m, 1.5 * m};
        }

        @Override
        public float[] sr(float[] t, String level) {  // nearest-neighbour xS, darkened by an amount per level
            int bits = DARKEN.get(level);
            int o = tile * scale;
            float[] out = new float[o * o * 3];
            for (int y = 0; y < o; y++)
                for (int x = 0; x < o; x++)
                    for (int c = 0; c < 3; c++)
                        out[(y * o + x) * 3 + c] = t[((y / scale) * tile + x / scale) * 3 + c] * (1f - 0.05f * (bits - 3));
            return out;
        }
    }

    static float[] bands(int h, int w) {
        float[] rgb = new float[h * w * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    int v = x < w / 3 ? 40 : x < 2 * w / 3 ? 120 : 220;  // three bands, three levels
                    rgb[(y * w + x) * 3 + c] = ((v + 7 * c + (x * 13 + y * 7) % 11) % 256) / 255f;
                }
        return rgb;
    }

    /** Every tile's pixels are its level's stand-in graph's on that tile alone ("center": each output pixel
     * belongs to exactly one tile), and its level is {@code want[k]}. */
    static void checkRouting(float[] rgb, int h, int w, TilePlan plan, FakeGraphs g, TilePipeline.Result r, String[] want) {
        int t = plan.tile, s = plan.scale;
        assertTrue("the image takes several levels", java.util.Arrays.stream(r.tileLevels).distinct().count() >= 2);
        float[][] wy = TilePlan.axisWeights(plan.ys, t, h, s, "center"), wx = TilePlan.axisWeights(plan.xs, t, w, s, "center");
        int o = t * s, checked = 0;
        for (int k = 0; k < plan.size(); k++) {
            assertEquals("tile " + k + ": the report's level", want[k], r.tileLevels[k]);
            assertEquals("tile " + k + ": its bits", (int) BITS.get(want[k]), r.tileBits[k]);
            float[] alone = g.sr(plan.extract(rgb, 3, k), r.tileLevels[k]);
            int iy = k / plan.xs.length, ix = k % plan.xs.length;
            for (int y = 0; y < o; y++)
                for (int x = 0; x < o; x++) {
                    if (wy[iy][y] != 1f || wx[ix][x] != 1f) continue;  // another tile decides this pixel
                    int oy = plan.ys[iy] * s + y, ox = plan.xs[ix] * s + x;
                    for (int c = 0; c < 3; c++) {
                        int v = (int) Math.max(0, Math.min(255, Math.rint(alone[(y * o + x) * 3 + c] * 255f)));
                        assertEquals("tile " + k + " (level " + r.tileLevels[k] + ") at " + oy + "," + ox, v,
                                r.rgb[(oy * w * s + ox) * 3 + c] & 0xff);
                    }
                    checked++;
                }
        }
        assertEquals(h * s * w * s, checked);
    }

    /** Routing: every tile's pixels are what its own level's graph computes on that tile alone. */
    @Test
    public void eachTileRunsItsOwnLevel() throws Exception {
        int h = 36, w = 60, t = 16, s = 2, ov = 4;
        float[] rgb = bands(h, w);
        TilePlan plan = new TilePlan(h, w, t, t - ov, s, "center");
        FakeGraphs g = new FakeGraphs(t, s);
        TilePipeline.Result r = TilePipeline.run(rgb, plan, LEVELS, BITS, null, g, (d, n, what) -> { });
        String[] want = new String[plan.size()];
        for (int k = 0; k < want.length; k++) want[k] = "a" + g.controller(plan.extract(rgb, 3, k));
        checkRouting(rgb, h, w, plan, g, r, want);
    }

    /** With a level gate: the image's budget allocates the levels (Budget), each tile runs its own. */
    @Test
    public void eachTileRunsItsBudgetedLevel() throws Exception {
        int h = 36, w = 60, t = 16, s = 2, ov = 4;
        float[] rgb = bands(h, w);
        TilePlan plan = new TilePlan(h, w, t, t - ov, s, "center");
        FakeGraphs g = new FakeGraphs(t, s);
        String[] choices = {"a4k1", "a5", "a6"};
        double[] costs = {0.4, 1.0, 1.1};
        double[][] sc = new double[plan.size()][];
        for (int k = 0; k < sc.length; k++) sc[k] = g.scores(plan.extract(rgb, 3, k));
        for (double budget : new double[] {0.6, 0.8}) {
            TilePipeline.Result r = TilePipeline.run(rgb, plan, LEVELS, BITS, new TilePipeline.Gate(choices, costs, budget), g,
                    (d, n, what) -> { });
            int[] ch = Budget.allocate(sc, costs, budget);
            String[] want = new String[ch.length];
            for (int k = 0; k < ch.length; k++) want[k] = choices[ch[k]];
            checkRouting(rgb, h, w, plan, g, r, want);
            assertTrue(r.cost <= budget + 1e-9);
        }
    }

    /** The allocation is the Python runtime's (granular_mobile.runtime.budget.allocate on these scores). */
    @Test
    public void budgetIsThePythonAllocation() {
        double[][] s = {{0.0, 0.322, 1.124}, {0.0, 0.676, 1.109}, {0.0, 0.639, 1.373}, {0.0, 0.505, 1.022}, {0.0, 1.017, 1.755},
            {0.0, 1.24, 1.889}, {0.0, 0.989, 0.99}, {0.0, 1.272, 1.586}, {0.0, 1.477, 1.948}, {0.0, 0.804, 1.511},
            {0.0, 0.465, 1.126}, {0.0, 1.139, 1.769}};
        double[] c = {0.4, 0.6, 1.0};
        assertArrayEquals(new int[] {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Budget.allocate(s, c, 0.4));
        assertArrayEquals(new int[] {0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1}, Budget.allocate(s, c, 0.55));
        assertArrayEquals(new int[] {2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1}, Budget.allocate(s, c, 0.7));
        assertArrayEquals(new int[] {2, 1, 2, 1, 2, 2, 1, 1, 1, 2, 2, 2}, Budget.allocate(s, c, 0.85));
        assertArrayEquals(new int[] {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, Budget.allocate(s, c, 1.0));
    }

    @Test(expected = IllegalArgumentException.class)
    public void badJsonIsRejected() {
        Json.parse("{\"a\": [1, 2,}");
    }
}
