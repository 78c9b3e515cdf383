package org.granularmobile.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The parts of an export's manifest.json the app needs (schema_version 1, TFLite target). */
public final class Manifest {
    public final int scale, tile;
    public final int[] bits;
    public final double[] thresholds;
    public final int[] gbcBits, e2bBits;
    public final String controllerFile, fp32File, singleFile;
    public final Map<Integer, String> srFiles = new LinkedHashMap<>();
    /** Every level (a6, a6k4: what one static graph computes), its bits and graph; a manifest
     * before levels gives its bit levels as a&lt;bits&gt;. */
    public final List<String> levels = new ArrayList<>();
    public final Map<String, Integer> levelBits = new LinkedHashMap<>();
    public final Map<String, String> levelFiles = new LinkedHashMap<>();
    /** The level gate (null without one): its choices, their costs, the default budget, and
     * the controller graph's output name of its scores. */
    public final String[] gateChoices;
    public final double[] gateCosts;
    public final double gateBudget;
    public final String scoresOutput;
    public final Map<String, String> sha256 = new LinkedHashMap<>();

    @SuppressWarnings("unchecked")
    public Manifest(String json) {
        Map<String, Object> m = (Map<String, Object>) Json.parse(json);
        Object v = m.get("schema_version");
        if (!(v instanceof Double) || ((Double) v).intValue() != 1)
            throw new IllegalArgumentException("manifest schema_version " + v + " is not supported (expected 1)");
        scale = ((Double) m.get("scale")).intValue();
        tile = ((Double) m.get("tile")).intValue();
        bits = ints((List<Object>) m.get("bits"));
        Map<String, Object> e2b = (Map<String, Object>) m.get("e2b");
        List<Object> th = (List<Object>) e2b.get("thresholds");
        thresholds = new double[] {(Double) th.get(0), (Double) th.get(1)};
        gbcBits = ints((List<Object>) e2b.get("gbc_bits"));
        e2bBits = ints((List<Object>) e2b.get("e2b_bits"));
        Map<String, Object> targets = (Map<String, Object>) m.get("targets");
        Map<String, Object> t = (Map<String, Object>) targets.get("tflite");
        if (t == null) throw new IllegalArgumentException("manifest has no tflite target: export with --target tflite");
        controllerFile = (String) t.get("controller");
        fp32File = (String) t.get("fp32");
        singleFile = (String) t.get("single_file");
        for (Map.Entry<String, Object> e : ((Map<String, Object>) t.get("sr")).entrySet())
            srFiles.put(Integer.parseInt(e.getKey()), (String) e.getValue());
        Map<String, Object> lf = (Map<String, Object>) t.get("levels");
        List<Object> lv = (List<Object>) m.get("levels");
        if (lv != null && !lv.isEmpty()) {
            for (Object o : lv) {
                Map<String, Object> l = (Map<String, Object>) o;
                String name = (String) l.get("name");
                levels.add(name);
                levelBits.put(name, ((Double) l.get("bits")).intValue());
            }
        } else {
            for (int b : bits) { levels.add("a" + b); levelBits.put("a" + b, b); }
        }
        for (String name : levels) {
            String f = lf != null ? (String) lf.get(name) : srFiles.get(levelBits.get(name));
            if (f == null) throw new IllegalArgumentException("manifest has no tflite graph for level " + name);
            levelFiles.put(name, f);
        }
        Map<String, Object> g = (Map<String, Object>) m.get("level_gate");
        if (g != null) {
            List<Object> ch = (List<Object>) g.get("choices"), co = (List<Object>) g.get("costs");
            gateChoices = new String[ch.size()];
            gateCosts = new double[co.size()];
            for (int i = 0; i < gateChoices.length; i++) {
                gateChoices[i] = (String) ch.get(i);
                gateCosts[i] = (Double) co.get(i);
                if (!levelFiles.containsKey(gateChoices[i]))
                    throw new IllegalArgumentException("level_gate choice " + gateChoices[i] + " is not a level");
            }
            gateBudget = (Double) g.get("budget");
            Map<String, Object> outs = (Map<String, Object>) t.get("controller_outputs");
            scoresOutput = outs == null ? null : (String) outs.get("scores");
            if (scoresOutput == null) throw new IllegalArgumentException("the tflite controller has no scores output; re-export");
        } else {
            gateChoices = null;
            gateCosts = null;
            gateBudget = Double.NaN;
            scoresOutput = null;
        }
        Map<String, Object> files = (Map<String, Object>) m.get("files");
        if (files != null)
            for (Map.Entry<String, Object> e : files.entrySet())
                sha256.put(e.getKey(), (String) ((Map<String, Object>) e.getValue()).get("sha256"));
    }

    /** The graph of a level (a6, a6k4). */
    public String fileForLevel(String level) {
        String f = levelFiles.get(level);
        if (f == null) throw new IllegalArgumentException("no graph for level " + level + "; valid: " + levelFiles.keySet());
        return f;
    }

    /** The graph to run for a tile at this bit-width. */
    public String fileForBits(int b) {
        String f = srFiles.get(b);
        if (f == null) throw new IllegalArgumentException("no graph for " + b + " bits; valid: " + srFiles.keySet());
        return f;
    }

    private static int[] ints(List<Object> l) {
        int[] a = new int[l.size()];
        for (int i = 0; i < a.length; i++) a[i] = ((Double) l.get(i)).intValue();
        return a;
    }
}
