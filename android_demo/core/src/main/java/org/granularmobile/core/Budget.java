package org.granularmobile.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Per-tile levels under a time budget: granular_mobile/runtime/budget.py, the same arithmetic.
 * Each tile takes the choice with the largest score - lam * cost (cheapest first on ties), lam the
 * smallest >= 0 whose mean cost fits the budget; the tiles that switch at that lam then fill what
 * is left of the budget, best predicted gain per unit of cost first.
 */
public final class Budget {
    private static final int STEPS = 60;

    private Budget() { }

    public static void check(double budget, double[] costs) {
        double lo = Double.POSITIVE_INFINITY;
        for (double c : costs) lo = Math.min(lo, c);
        if (!(Double.isFinite(budget) && budget >= lo - 1e-9))
            throw new IllegalArgumentException("budget " + budget + " is below the cheapest level's cost " + lo);
    }

    private static int[] pick(double[][] s, double[] c, double lam) {
        int[] out = new int[s.length];
        for (int i = 0; i < s.length; i++) {
            int best = 0;
            double bv = s[i][0] - lam * c[0];
            for (int l = 1; l < c.length; l++) {
                double v = s[i][l] - lam * c[l];
                if (v > bv) { bv = v; best = l; }
            }
            out[i] = best;
        }
        return out;
    }

    private static double total(int[] ch, double[] c) {
        double t = 0;
        for (int k : ch) t += c[k];
        return t;
    }

    /** Choice index per tile (scores: per tile, the predicted gain of each choice, cheapest first). */
    public static int[] allocate(double[][] scores, double[] costs, double budget) {
        check(budget, costs);
        int n = scores.length;
        if (n == 0) return new int[0];
        int[] first = pick(scores, costs, 0);
        if (total(first, costs) / n <= budget + 1e-12) return first;
        double hi = 0;
        for (double[] s : scores)
            for (int l = 0; l < costs.length; l++) {
                double dc = costs[l] - costs[0];
                if (dc > 0) hi = Math.max(hi, (s[l] - s[0]) / dc);
            }
        hi = hi * 2 + 1;
        double lo = 0;
        for (int i = 0; i < STEPS; i++) {
            double mid = (lo + hi) / 2;
            if (total(pick(scores, costs, mid), costs) / n <= budget + 1e-12) hi = mid; else lo = mid;
        }
        int[] out = pick(scores, costs, hi), up = pick(scores, costs, lo);
        double spare = budget * n - total(out, costs);
        List<Integer> rows = new ArrayList<>();
        for (int i = 0; i < n; i++) if (up[i] != out[i]) rows.add(i);
        final int[] o = out;
        rows.sort((a, b) -> {  // best gain per cost first; ties by index (Python's stable argsort)
            double ga = (scores[a][up[a]] - scores[a][o[a]]) / Math.max(costs[up[a]] - costs[o[a]], 1e-12);
            double gb = (scores[b][up[b]] - scores[b][o[b]]) / Math.max(costs[up[b]] - costs[o[b]], 1e-12);
            return ga != gb ? Double.compare(gb, ga) : Integer.compare(a, b);
        });
        for (int i : rows) {
            double extra = costs[up[i]] - costs[out[i]];
            if (extra <= spare + 1e-12) { out[i] = up[i]; spare -= extra; }
        }
        return out;
    }
}
