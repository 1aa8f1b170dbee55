"""The compiled core of the feature engine: one step function per kind of keyed state.

``window_step`` and ``label_query`` are the *only* implementations of the window and
label-aware aggregations. Replay calls them in a compiled loop over each key's events; the
online path calls them for one event against the key's live state. Because both run the same
code on the same per-key sequence, they agree value for value (floats bit for bit).

Per-key window state (all arrays owned by the caller):

* ``ts[cap]`` -- event times of the retained earlier events, sorted ascending; ties keep log
  order (a new event is inserted after every retained event with the same time);
* ``X[cap, nv]`` -- the aggregated values; ``C[cap, nc]`` -- categorical codes (for distinct);
* ``P0/P1/P2[cap + 1, nv]`` -- prefix sums of the non-missing count, of ``x - shift`` and of
  ``(x - shift)**2``: window sums in O(log n) and a numerically tame variance;
* ``meta`` -- ``[start, end, max_ts, seen, evicted_since_rebase]``; live entries are
  ``[start, end)``.

Invariant (bounded state): an entry with ``ts <= max_ts - horizon`` is never inside any future
window (every window's lower bound is at least ``max_ts - horizon`` and ``max_ts`` only grows),
so it is evicted. ``horizon`` is the group's largest window plus the allowed lateness.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# meta slots
START, END, MAXTS, SEEN, EVICTED = 0, 1, 2, 3, 4
META_LEN = 5

# aggregation kind codes (columns of a spec row: kind, window_us, column, out)
K_COUNT, K_SUM, K_MEAN, K_STD, K_MIN, K_MAX, K_DISTINCT, K_SINCE_LAST = 0, 1, 2, 3, 4, 5, 6, 7
K_LABEL_COUNT, K_LABEL_SUM = 10, 11
KIND_CODES = {
    "count": K_COUNT,
    "sum": K_SUM,
    "mean": K_MEAN,
    "std": K_STD,
    "min": K_MIN,
    "max": K_MAX,
    "distinct": K_DISTINCT,
    "since_last": K_SINCE_LAST,
    "label_count": K_LABEL_COUNT,
    "label_sum": K_LABEL_SUM,
}

_MICROS = 1_000_000.0


@njit(cache=True, nogil=True, inline="always")
def _search_right(ts: np.ndarray, lo: int, hi: int, value: int) -> int:
    """First index in ``ts[lo:hi]`` whose value is greater than ``value``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if ts[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _rebuild_prefix(X, P0, P1, P2, shift, frm, end):  # type: ignore[no-untyped-def]
    nv = X.shape[1]
    for i in range(frm, end):
        for v in range(nv):
            x = X[i, v]
            if np.isnan(x):
                P0[i + 1, v] = P0[i, v]
                P1[i + 1, v] = P1[i, v]
                P2[i + 1, v] = P2[i, v]
            else:
                d = x - shift[v]
                P0[i + 1, v] = P0[i, v] + 1.0
                P1[i + 1, v] = P1[i, v] + d
                P2[i + 1, v] = P2[i, v] + d * d


@njit(cache=True, nogil=True, inline="always")
def window_step(  # type: ignore[no-untyped-def]
    t, xin, voff, cin, coff, rin, ts, X, C, P0, P1, P2, meta, shift, specs, s_lo, s_hi, horizon,
    out, row,
):  # fmt: skip
    """Compute the window features of one event, then fold the event into the state.

    The event's aggregated values are ``xin[rin, voff:voff + nv]`` and its categorical codes
    ``cin[rin, coff:coff + nc]``; its features go to ``out[o, row]`` for the spec rows
    ``specs[s_lo:s_hi]``. Requires ``meta[END] < len(ts)`` (the caller grows the buffers).
    """
    start = meta[START]
    end = meta[END]
    seen = meta[SEEN] > 0
    floor = meta[MAXTS] - horizon if seen else t - horizon - 1
    hi = _search_right(ts, start, end, t)
    lo = hi
    prev_window = -1
    for s in range(s_lo, s_hi):
        kind = specs[s, 0]
        if specs[s, 1] != prev_window:  # specs are sorted by window: search once per window
            prev_window = specs[s, 1]
            lower = t - prev_window
            if floor > lower:
                lower = floor
            lo = _search_right(ts, start, hi, lower)
        col = specs[s, 2]
        o = specs[s, 3]
        n = hi - lo
        if kind == K_COUNT:
            out[o, row] = n
        elif kind in (K_SUM, K_MEAN, K_STD):
            k = P0[hi, col] - P0[lo, col]
            s1 = P1[hi, col] - P1[lo, col]
            if kind == K_SUM:
                out[o, row] = s1 + k * shift[col]
            elif kind == K_MEAN:
                out[o, row] = s1 / k + shift[col] if k > 0 else np.nan
            elif k > 1:
                s2 = P2[hi, col] - P2[lo, col]
                var = (s2 - s1 * s1 / k) / (k - 1.0)
                # Below this the variance is cancellation noise of the prefix sums: the
                # values are equal to within float precision, so the spread is exactly 0.
                noise = 1e-10 * s2 / k
                out[o, row] = np.sqrt(var) if var > noise else 0.0
            else:
                out[o, row] = np.nan
        elif kind in (K_MIN, K_MAX):
            best = np.nan
            for j in range(lo, hi):
                v = X[j, col]
                if np.isnan(v):
                    continue
                if np.isnan(best) or (v < best if kind == K_MIN else v > best):
                    best = v
            out[o, row] = best
        elif kind == K_DISTINCT:
            if n == 0:
                out[o, row] = 0.0
            else:
                vals = np.sort(C[lo:hi, col].copy())
                d = 1
                for j in range(1, n):
                    if vals[j] != vals[j - 1]:
                        d += 1
                out[o, row] = d
        elif kind == K_SINCE_LAST:
            out[o, row] = (t - ts[hi - 1]) / _MICROS if n > 0 else np.nan

    # Fold the event in: update the high-water mark, evict, insert in time order.
    nv = X.shape[1]
    nc = C.shape[1]
    new_max = t if (not seen or t > meta[MAXTS]) else meta[MAXTS]
    meta[MAXTS] = new_max
    meta[SEEN] = 1
    if not seen:
        for v in range(nv):
            x = xin[rin, voff + v]
            shift[v] = 0.0 if np.isnan(x) else x
    floor = new_max - horizon
    while start < end and ts[start] <= floor:
        start += 1
        meta[EVICTED] += 1
    meta[START] = start
    if meta[EVICTED] > 16 and meta[EVICTED] > end - start:
        # Rebase the prefix sums on the live entries so they never grow without bound.
        for v in range(nv):
            P0[start, v] = 0.0
            P1[start, v] = 0.0
            P2[start, v] = 0.0
        _rebuild_prefix(X, P0, P1, P2, shift, start, end)
        meta[EVICTED] = 0
    if t <= floor:
        return  # too late to matter to any future window: nothing to retain
    if start == end:
        for v in range(nv):
            P0[start, v] = 0.0
            P1[start, v] = 0.0
            P2[start, v] = 0.0
    p = _search_right(ts, start, end, t)
    for j in range(end, p, -1):
        ts[j] = ts[j - 1]
        for v in range(nv):
            X[j, v] = X[j - 1, v]
        for v in range(nc):
            C[j, v] = C[j - 1, v]
    ts[p] = t
    for v in range(nv):
        X[p, v] = xin[rin, voff + v]
    for v in range(nc):
        C[p, v] = cin[rin, coff + v]
    _rebuild_prefix(X, P0, P1, P2, shift, p, end + 1)
    meta[END] = end + 1


@njit(cache=True, nogil=True)
def window_replay(  # type: ignore[no-untyped-def]
    ts_all, V, voff, nv, C_all, coff, nc, order, bounds, g_lo, g_hi, specs, horizon, out
):
    """Run ``window_step`` over the key segments ``g_lo..g_hi`` (rows ``order[bounds[g]:
    bounds[g + 1]]`` form segment ``g``, in log order). Buffers are sized for the longest
    segment and reused, so a key never needs to grow them."""
    longest = 0
    for g in range(g_lo, g_hi):
        longest = max(longest, bounds[g + 1] - bounds[g])
    ts = np.empty(longest + 1, np.int64)
    X = np.empty((longest + 1, nv), np.float64)
    C = np.empty((longest + 1, nc), np.int64)
    P0 = np.zeros((longest + 2, nv), np.float64)
    P1 = np.zeros((longest + 2, nv), np.float64)
    P2 = np.zeros((longest + 2, nv), np.float64)
    meta = np.zeros(META_LEN, np.int64)
    shift = np.zeros(nv, np.float64)
    n_specs = specs.shape[0]
    for g in range(g_lo, g_hi):
        meta[:] = 0
        for i in range(bounds[g], bounds[g + 1]):
            r = order[i]
            window_step(
                ts_all[r], V, voff, C_all, coff, r, ts, X, C, P0, P1, P2, meta, shift,
                specs, 0, n_specs, horizon, out, r,
            )  # fmt: skip


@njit(cache=True, nogil=True)
def label_query(t, lts, lka, lv, lmeta, specs, s_lo, s_hi, horizon, out, row):  # type: ignore[no-untyped-def]
    """Label-aware features of one event at time ``t``, then advance the key's high-water mark.

    Counts labels with ``known_at < t`` whose labelled event time is in the window
    ``(t - w, t]`` (and above the retention floor, exactly as for window features).
    """
    start = lmeta[START]
    end = lmeta[END]
    seen = lmeta[SEEN] > 0
    floor = lmeta[MAXTS] - horizon if seen else t - horizon - 1
    hi = _search_right(lts, start, end, t)
    for s in range(s_lo, s_hi):
        lower = t - specs[s, 1]
        if floor > lower:
            lower = floor
        lo = _search_right(lts, start, hi, lower)
        cnt = 0.0
        tot = 0.0
        for j in range(lo, hi):
            if lka[j] < t:
                cnt += 1.0
                tot += lv[j]
        out[specs[s, 3], row] = cnt if specs[s, 0] == K_LABEL_COUNT else tot
    new_max = t if (not seen or t > lmeta[MAXTS]) else lmeta[MAXTS]
    lmeta[MAXTS] = new_max
    lmeta[SEEN] = 1
    floor = new_max - horizon
    while start < end and lts[start] <= floor:
        start += 1
    lmeta[START] = start


@njit(cache=True, nogil=True)
def label_insert(ets, known_at, value, lts, lka, lv, lmeta, horizon):  # type: ignore[no-untyped-def]
    """Fold one label (of an event at ``ets``) into the key's label state, in event-time order.

    Requires ``lmeta[END] < len(lts)``.
    """
    start = lmeta[START]
    end = lmeta[END]
    if lmeta[SEEN] > 0 and ets <= lmeta[MAXTS] - horizon:
        return  # outside every future window
    p = _search_right(lts, start, end, ets)
    for j in range(end, p, -1):
        lts[j] = lts[j - 1]
        lka[j] = lka[j - 1]
        lv[j] = lv[j - 1]
    lts[p] = ets
    lka[p] = known_at
    lv[p] = value
    lmeta[END] = end + 1


@njit(cache=True, nogil=True)
def label_replay(ts_all, order, bounds, l_ets, l_ka, l_v, l_bounds, specs, horizon, out):  # type: ignore[no-untyped-def]
    """Replay label-aware features key by key: fold the key's labels in, then run its events.

    Labels are filtered by ``known_at < t`` at query time, so folding them in first gives the
    same answer as folding each in as it arrives live.
    """
    n_specs = specs.shape[0]
    for g in range(bounds.shape[0] - 1):
        la = l_bounds[g]
        lb = l_bounds[g + 1]
        m = lb - la
        lts = np.empty(m + 1, np.int64)
        lka = np.empty(m + 1, np.int64)
        lv = np.empty(m + 1, np.float64)
        lmeta = np.zeros(META_LEN, np.int64)
        for j in range(la, lb):
            label_insert(l_ets[j], l_ka[j], l_v[j], lts, lka, lv, lmeta, horizon)
        for i in range(bounds[g], bounds[g + 1]):
            r = order[i]
            label_query(ts_all[r], lts, lka, lv, lmeta, specs, 0, n_specs, horizon, out, r)


@njit(cache=True, nogil=True)
def stable_order(codes, k, order):  # type: ignore[no-untyped-def]
    """Counting sort: reorder ``order`` stably by ``codes[order]`` (codes in ``[0, k)``)."""
    n = order.shape[0]
    counts = np.zeros(k + 1, np.int64)
    for i in range(n):
        counts[codes[order[i]] + 1] += 1
    for c in range(k):
        counts[c + 1] += counts[c]
    result = np.empty(n, np.int64)
    for i in range(n):
        c = codes[order[i]]
        result[counts[c]] = order[i]
        counts[c] += 1
    return result
