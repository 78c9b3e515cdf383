package org.granularmobile.core;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tint of each level in the level map, as `gdq run --bitmap` draws it
 * (granular_mobile/runtime/bitmap.py; the golden file colours.json holds Python's values).
 */
public final class LevelColours {
    private LevelColours() {}

    private static final Pattern LEVEL = Pattern.compile("a(\\d+)(?:k(\\d+))?");

    /** RGB of a full-depth bit level (blue, teal, orange, vermillion; fp32 grey), else white. */
    static int[] bits(int b) {
        switch (b) {
            case 4: return new int[] {0, 114, 178};
            case 5: return new int[] {0, 158, 115};
            case 6: return new int[] {230, 159, 0};
            case 8: return new int[] {213, 94, 0};
            case 32: return new int[] {128, 128, 128};
            default: return new int[] {255, 255, 255};
        }
    }

    /** RGB of a level name (`a6`, `a6k4`, `fp32`): an exit level by its depth (up to 4 blocks sky
     *  blue, up to 8 yellow, deeper reddish purple). */
    public static int[] rgb(String level) {
        if ("fp32".equals(level)) return bits(32);
        Matcher m = LEVEL.matcher(level);
        if (!m.matches()) return new int[] {255, 255, 255};
        if (m.group(2) == null) return bits(Integer.parseInt(m.group(1)));
        int k = Integer.parseInt(m.group(2));
        if (k <= 4) return new int[] {86, 180, 233};
        if (k <= 8) return new int[] {240, 228, 66};
        return new int[] {204, 121, 167};
    }

    /** Opaque ARGB of a level, for android.graphics. */
    public static int argb(String level) {
        int[] c = rgb(level);
        return 0xff000000 | (c[0] << 16) | (c[1] << 8) | c[2];
    }
}
