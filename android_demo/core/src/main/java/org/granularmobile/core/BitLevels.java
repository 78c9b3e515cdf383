package org.granularmobile.core;

/** The controller's final rule and FAB, for checking a controller graph's "bits" output. */
public final class BitLevels {
    private BitLevels() {}

    /** GBC choice (argmax of the logits) and tile entropy -> bit-width (E2B for the gate's top choice). */
    public static int finalBits(float[] logits, float entropy, double[] thresholds, int[] gbcBits, int[] e2bBits) {
        int choice = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[choice]) choice = i;
        if (choice != 2) return gbcBits[choice];
        int level = (entropy > thresholds[0] ? 1 : 0) + (entropy > thresholds[1] ? 1 : 0);
        return e2bBits[level];
    }

    /** Feature average bit-width of an image: the mean of its tiles' bit-widths (layer-invariant). */
    public static double fab(int[] tileBits) {
        if (tileBits.length == 0) return Double.NaN;
        double s = 0;
        for (int b : tileBits) s += b;
        return s / tileBits.length;
    }
}
