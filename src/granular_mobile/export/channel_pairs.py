"""Channel order that lets 8-bit activations x int8 weights run on x86 u8s8 kernels exactly.

onnxruntime's x86 kernels for uint8 activations x int8 weights on AVX2 without VNNI
(``vpmaddubsw``) multiply the activation bytes by the weight bytes and add each pair of
neighbouring products, (a[k] * w[k] + a[k+1] * w[k+1]), into a *saturating* int16 before
widening to int32. With a <= a_max the pair sum can only leave int16 when both weights have the
same sign and (|w[k]| + |w[k+1]|) * a_max > 32767; with opposite signs it is at most
a_max * 127 = 32385 for a_max = 255. k runs over the conv's (kh, kw, channel) order, the order of
onnxruntime's im2col / indirect-conv packing, so with an even channel count each pair is two
input channels at one tap.

k-bit levels (k <= 6: a_max <= 63) never saturate. At 8 bits the trained block convs' weights
reach +-127, so those convs used to run on the non-saturating u8u8 kernels (about 1.6x slower
here). Yet a pair only overflows where two *neighbouring channels* both carry large weights of
the same sign at the same tap and output, which is rare: this module permutes channels so that
no such pair exists. Channels are permuted consistently through everything that shares them
(residual adds, PReLU, per-channel affine), so the program computes exactly the same integers
in a different channel order; where no safe pairing exists (or the channel order is pinned by
the graph input, output or a DepthToSpace) nothing moves and the emitter keeps the u8u8 path
for that conv.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ir import Add, Affine, Conv, DepthToSpace, Node, PRelu, Program, QParams, Relu, handler, node_inputs

INT16_MAX = 32767


def activation_max(q: QParams | None) -> int:
    """Largest uint8 value of an activation as onnxruntime carries it (signed ranges shifted)."""
    assert q is not None, "an integer conv's input grid"
    return q.hi + q.zero_point


def _flat_rows(weight: np.ndarray) -> np.ndarray:
    """(O, C, kh, kw) -> (O, kh*kw*C) in the kernels' reduction order, padded to an even length."""
    o = weight.shape[0]
    w = weight.astype(np.int32).transpose(0, 2, 3, 1).reshape(o, -1)
    return np.pad(w, ((0, 0), (0, w.shape[1] % 2)))


def pair_sums_fit(weight: np.ndarray, a_max: int) -> bool:
    """True if no neighbouring-product pair of this integer conv can saturate int16 for any input
    in [0, a_max] (see the module docstring)."""
    w = _flat_rows(weight)
    a, b = w[:, 0::2], w[:, 1::2]
    same = (a > 0) & (b > 0) | (a < 0) & (b < 0)
    worst = np.where(same, np.abs(a) + np.abs(b), np.maximum(np.abs(a), np.abs(b)))
    return bool((worst.astype(np.int64) * a_max <= INT16_MAX).all())


def _conflicts(weight: np.ndarray, a_max: int) -> np.ndarray:
    """(C, C) bool: channels i and j cannot be neighbours in this conv."""
    c = weight.shape[1]
    w = weight.astype(np.int32).transpose(0, 2, 3, 1).reshape(-1, c)  # rows: (output, tap)
    limit = INT16_MAX // a_max
    bad = np.zeros((c, c), dtype=bool)
    for sign in (1, -1):
        m = np.where(sign * w > 0, np.abs(w), 0)
        rows = m[(m > limit // 2).any(axis=1)]  # a conflicting pair needs one weight above limit/2
        if len(rows):
            bad |= ((rows[:, :, None] + rows[:, None, :] > limit) & (rows[:, :, None] > 0) & (rows[:, None, :] > 0)).any(0)
    np.fill_diagonal(bad, False)
    return bad


def max_matching(ok: np.ndarray) -> list[int]:
    """Maximum matching of a general graph (Edmonds' blossom algorithm, O(n^3)): ``ok`` is the
    symmetric adjacency matrix; returns mate[i] (-1: unmatched)."""
    n = len(ok)
    adj = [np.flatnonzero(ok[i]).tolist() for i in range(n)]
    match = [-1] * n

    def lca(a: int, b: int, base: list[int], parent: list[int]) -> int:
        seen = [False] * n
        while True:
            a = base[a]
            seen[a] = True
            if match[a] == -1:
                break
            a = parent[match[a]]
        while True:
            b = base[b]
            if seen[b]:
                return b
            b = parent[match[b]]

    def mark(v: int, b: int, child: int, blossom: list[bool], base: list[int], parent: list[int]) -> None:
        while base[v] != b:
            blossom[base[v]] = blossom[base[match[v]]] = True
            parent[v] = child
            child = match[v]
            v = parent[match[v]]

    for root in range(n):
        if match[root] != -1:
            continue
        parent, base = [-1] * n, list(range(n))
        used = [False] * n
        used[root] = True
        queue, head, end = [root], 0, -1

        while head < len(queue) and end < 0:
            v = queue[head]
            head += 1
            for to in adj[v]:
                if base[v] == base[to] or match[v] == to:
                    continue
                if to == root or (match[to] != -1 and parent[match[to]] != -1):
                    b = lca(v, to, base, parent)
                    blossom = [False] * n
                    mark(v, b, to, blossom, base, parent)
                    mark(to, b, v, blossom, base, parent)
                    for i in range(n):
                        if blossom[base[i]]:
                            base[i] = b
                            if not used[i]:
                                used[i] = True
                                queue.append(i)
                elif parent[to] == -1:
                    parent[to] = v
                    if match[to] == -1:
                        end = to
                        break
                    used[match[to]] = True
                    queue.append(match[to])
        while end != -1:  # augment along the alternating path
            pv = parent[end]
            nxt = match[pv]
            match[end], match[pv] = pv, end
            end = nxt
    return match


def _pairing(bad: np.ndarray) -> list[int] | None:
    """A channel order whose neighbours (0, 1), (2, 3), ... avoid every conflict: a perfect
    matching of the compatibility graph, or None where none exists."""
    ok = ~bad
    np.fill_diagonal(ok, False)
    mate = max_matching(ok)
    if len(ok) % 2 or -1 in mate:
        return None
    order: list[int] = []
    for i, j in enumerate(mate):
        if i < j:
            order += [i, j]
    return order


def _tie(n: PRelu | Relu | Affine, union: Callable[[str, str], None], pinned: set[str]) -> None:
    union(n.inp, n.out)  # elementwise per channel: the output's channels are the input's


def _tie_conv(n: Conv, union: Callable[[str, str], None], pinned: set[str]) -> None:
    if n.groups > 1:  # depthwise: one filter per channel
        union(n.inp, n.out)


def _tie_add(n: Add, union: Callable[[str, str], None], pinned: set[str]) -> None:
    union(n.a, n.out)
    union(n.b, n.out)


def _pin(n: DepthToSpace, union: Callable[[str, str], None], pinned: set[str]) -> None:
    pinned.update((n.inp, n.out))  # the channel order is the pixel layout


#: node kind -> how it ties the channel order of its tensors
TIES: dict[type, Callable[[Any, Callable[[str, str], None], set[str]], None]] = {
    Conv: _tie_conv, PRelu: _tie, Relu: _tie, Affine: _tie, Add: _tie_add, DepthToSpace: _pin,
}


def _channel_groups(prog: Program) -> tuple[dict[str, str], set[str]]:
    """Union of tensors whose channels must move together, and the roots that cannot move."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    pinned = {prog.input, prog.output}
    for n in prog.nodes:
        handler(TIES, n, "the channel reordering")(n, union, pinned)
        for t in (*node_inputs(n), n.out):
            find(t)
    return {t: find(t) for t in parent}, {find(t) for t in pinned}


Perm = np.ndarray | None


def _permute_conv(n: Conv, p_in: Perm, p_out: Perm) -> None:
    if n.groups > 1:  # depthwise: one filter per channel, channels tied in to out
        p_in = None
    if p_out is not None:
        n.weight = n.weight[p_out]
        n.w_scale = None if n.w_scale is None else np.asarray(n.w_scale)[p_out]
        n.bias = None if n.bias is None else np.asarray(n.bias)[p_out]
        if n.groups > 1:
            n.groups = len(p_out)
    if p_in is not None:
        n.weight = n.weight[:, p_in]


def _permute_affine(n: Affine, p_in: Perm, p_out: Perm) -> None:
    if p_out is not None:
        n.scale, n.shift = np.asarray(n.scale)[p_out], np.asarray(n.shift)[p_out]


def _no_parameters(n: Node, p_in: Perm, p_out: Perm) -> None:
    """Nothing per channel to move (a PReLU's slope is one number)."""


#: node kind -> how its per-channel parameters follow a new channel order (input, output)
PERMUTE: dict[type, Callable[[Any, Perm, Perm], None]] = {
    Conv: _permute_conv, Affine: _permute_affine, PRelu: _no_parameters, Relu: _no_parameters,
    Add: _no_parameters, DepthToSpace: _no_parameters,
}


def order_for_u8s8(prog: Program) -> tuple[Program, list[str]]:
    """The program with channels reordered so that every 8-bit integer conv whose weights could
    saturate gets saturation-free neighbour pairs; also the names of the convs that still cannot
    take the u8s8 kernels (no pairing found, or pinned channels)."""
    group_of, pinned = _channel_groups(prog)
    at_risk = [n for n in prog.nodes if isinstance(n, Conv) and n.integer and n.groups == 1
               and not pair_sums_fit(n.weight, activation_max(n.in_q))]
    perms: dict[str, np.ndarray] = {}
    for g in sorted({group_of[n.inp] for n in at_risk}):
        if g in pinned:
            continue
        users = [n for n in at_risk if group_of[n.inp] == g]
        if any(n.weight.shape[1] % 2 for n in users):
            continue
        # one order serves every conv reading these channels (the residual stream feeds all
        # first block convs); take the convs with the fewest conflicts first while one exists
        conflicts = sorted((_conflicts(n.weight, activation_max(n.in_q)) for n in users), key=lambda b: int(b.sum()))
        bad = np.zeros_like(conflicts[0])
        order = None
        for b in conflicts:
            found = _pairing(bad | b)
            if found is not None:
                bad, order = bad | b, found
        if order is not None:
            perms[g] = np.asarray(order)
    out = copy.deepcopy(prog)
    for n in out.nodes:
        p_in = perms.get(group_of[node_inputs(n)[0]])
        handler(PERMUTE, n, "the channel reordering")(n, p_in, perms.get(group_of[n.out]))
    still = [n.name for n in out.nodes if isinstance(n, Conv) and n.integer and n.groups == 1
             and not pair_sums_fit(n.weight, activation_max(n.in_q))]
    return out, still
