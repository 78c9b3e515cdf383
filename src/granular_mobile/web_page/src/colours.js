// The tint of each level in the level map, as `gdq run --bitmap` draws it
// (src/granular_mobile/runtime/bitmap.py; tests/test_runtime.py checks that both agree).

/** RGB per full-depth bit level (colour-blind-safe: blue, teal, orange, vermillion) and fp32. */
export const BIT_COLOURS = { 4: [0, 114, 178], 5: [0, 158, 115], 6: [230, 159, 0], 8: [213, 94, 0], 32: [128, 128, 128] };
/** An exit level by its depth: up to 4 blocks sky blue, up to 8 yellow, deeper reddish purple. */
export const EXIT_COLOURS = [[4, [86, 180, 233]], [8, [240, 228, 66]], [Infinity, [204, 121, 167]]];
const WHITE = [255, 255, 255];

/** Colour of a level name (`a6`, `a6k4`, `fp32`) or a bit-width (6, 32). */
export function levelColour(level) {
  if (typeof level === 'number') return BIT_COLOURS[level] || WHITE;
  if (level === 'fp32') return BIT_COLOURS[32];
  const m = /^a(\d+)(?:k(\d+))?$/.exec(level);
  if (!m) return WHITE;
  if (m[2] === undefined) return BIT_COLOURS[Number(m[1])] || WHITE;
  return EXIT_COLOURS.find(([k]) => Number(m[2]) <= k)[1];
}

/** The legend's label of a level. */
export function levelLabel(level) {
  if (typeof level === 'number') return level === 32 ? 'fp32' : `${level}-bit`;
  return level;
}
