"""Per-tile levels under a time budget: the level gate's run-time half.

The controller graph's ``scores`` output predicts, per tile, the gain of each level choice
(dB of the tile's image, over the cheapest choice). An image's allocation maximises the summed
predicted gain with the tiles' mean cost (relative to the full-depth graph) within the budget:
a knapsack whose Lagrangian relaxation picks, per tile, the choice with the largest
``score - lam * cost``, with ``lam`` the smallest value whose mean cost fits. More budget only
lowers ``lam``, so every tile keeps or raises its level: the knob is monotone in time and in
predicted gain. The allocation needs every tile's scores first (the controller is ~2 % of a
tile's SR time), and no torch: the browser and Android cores do the same arithmetic.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

#: bisection steps on lam: 60 halvings of the bracket reach float64's resolution
_STEPS = 60


def check_budget(budget: float, costs: Sequence[float]) -> float:
    """A budget the levels can meet: from the cheapest choice's cost up (anything above the
    dearest choice's cost is the same as it)."""
    lo = min(costs)
    if not (np.isfinite(budget) and budget >= lo - 1e-9):
        raise ConfigError(f"``budget`` {budget} is below the cheapest level's cost {lo:.3g} "
                          f"(budgets are a mean time per tile relative to the full graph: {lo:.3g} .. {max(costs):.3g})")
    return float(budget)


def allocate(scores: np.ndarray, costs: Sequence[float], budget: float) -> np.ndarray:
    """Choice index per tile: ``argmax(score - lam * cost)`` (ties to the cheaper choice), with
    ``lam >= 0`` the smallest whose tiles' mean cost is within ``budget``."""
    s = np.asarray(scores, np.float64)
    c = np.asarray(costs, np.float64)
    if s.ndim != 2 or s.shape[1] != len(c):
        raise ConfigError(f"scores of shape {s.shape} do not match {len(c)} level costs")
    check_budget(budget, list(costs))
    if len(s) == 0:
        return np.zeros(0, np.int64)

    def pick(lam: float) -> np.ndarray:
        # argmax takes the first maximum: choices are cheapest first, so ties go cheap
        return np.argmax(s - lam * c, axis=1)

    first = pick(0.0)
    if c[first].mean() <= budget + 1e-12:
        return first
    # at lam_hi no dearer choice beats the cheapest one on any tile
    dc = c - c[0]
    ds = s - s[:, :1]
    pos = dc > 0
    lam_hi = float(max((ds[:, pos] / dc[pos]).max(), 0.0)) * 2 + 1.0
    lam_lo = 0.0
    for _ in range(_STEPS):
        mid = (lam_lo + lam_hi) / 2
        if c[pick(mid)].mean() <= budget + 1e-12:
            lam_hi = mid
        else:
            lam_lo = mid
    out, up = pick(lam_hi), pick(lam_lo)
    # the tiles that switch between lam_hi and lam_lo do so at one lam: with few tiles (a small
    # image has a handful) that step can leave much of the budget unspent. Fill it with those
    # switches, best predicted gain per unit of cost first.
    spare = budget * len(s) - c[out].sum()
    rows = np.flatnonzero(up != out)
    gain = (s[rows, up[rows]] - s[rows, out[rows]]) / np.maximum(c[up[rows]] - c[out[rows]], 1e-12)
    for i in rows[np.argsort(-gain, kind="stable")]:
        extra = c[up[i]] - c[out[i]]
        if extra <= spare + 1e-12:
            out[i] = up[i]
            spare -= extra
    return out


__all__ = ["allocate", "check_budget"]
