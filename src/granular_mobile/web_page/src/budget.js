// Per-tile levels under a time budget: granular_mobile/runtime/budget.py, the same arithmetic.
// scores: one array per tile, the level gate's predicted gain of each choice (cheapest first);
// costs: each choice's time per tile relative to the full graph. Each tile takes the choice with
// the largest score - lam * cost, lam the smallest >= 0 whose mean cost fits the budget; the
// tiles that switch at that lam then fill what is left of the budget, best gain per cost first.

export class BudgetError extends Error {}

const STEPS = 60;

export function checkBudget(budget, costs) {
  const lo = Math.min(...costs), hi = Math.max(...costs);
  if (!(Number.isFinite(budget) && budget >= lo - 1e-9)) {
    throw new BudgetError(`budget ${budget} is below the cheapest level's cost ${+lo.toPrecision(3)} (budgets are a mean `
      + `time per tile relative to the full graph: ${+lo.toPrecision(3)} .. ${+hi.toPrecision(3)})`);
  }
  return budget;
}

export function allocate(scores, costs, budget) {
  checkBudget(budget, costs);
  const n = scores.length, L = costs.length;
  if (n === 0) return [];
  for (const s of scores) if (s.length !== L) throw new BudgetError(`scores of ${s.length} choices do not match ${L} costs`);
  const pick = (lam) => scores.map((s) => { // first maximum: choices are cheapest first, ties go cheap
    let best = 0, bv = s[0] - lam * costs[0];
    for (let l = 1; l < L; l++) { const v = s[l] - lam * costs[l]; if (v > bv) { bv = v; best = l; } }
    return best;
  });
  const mean = (ch) => ch.reduce((a, c) => a + costs[c], 0) / n;
  const first = pick(0);
  if (mean(first) <= budget + 1e-12) return first;
  let lamHi = 0;
  for (const s of scores) for (let l = 0; l < L; l++) {
    const dc = costs[l] - costs[0];
    if (dc > 0) lamHi = Math.max(lamHi, (s[l] - s[0]) / dc);
  }
  lamHi = lamHi * 2 + 1;
  let lamLo = 0;
  for (let i = 0; i < STEPS; i++) {
    const mid = (lamLo + lamHi) / 2;
    if (mean(pick(mid)) <= budget + 1e-12) lamHi = mid; else lamLo = mid;
  }
  const out = pick(lamHi), up = pick(lamLo);
  let spare = budget * n - out.reduce((a, c) => a + costs[c], 0);
  const rows = [];
  for (let i = 0; i < n; i++) if (up[i] !== out[i]) rows.push(i);
  const gain = (i) => (scores[i][up[i]] - scores[i][out[i]]) / Math.max(costs[up[i]] - costs[out[i]], 1e-12);
  rows.sort((a, b) => gain(b) - gain(a) || a - b); // stable: the Python side's argsort(kind="stable")
  for (const i of rows) {
    const extra = costs[up[i]] - costs[out[i]];
    if (extra <= spare + 1e-12) { out[i] = up[i]; spare -= extra; }
  }
  return out;
}
