"""The compiled core of the feature engine: one step function per kind of keyed state.

``window_step`` and ``label_query`` are the *only* implementations of the window and
label-aware aggregations. Replay calls them in a compiled loop over each key's events; the
online path calls them for one event against the key's live state. Because both run the same
code on the same per-key sequence, they agree value for value (floats bit for bit).

Per-key window state (all arrays owned by the caller):

* ``ts[cap]`` -- event times of the retained earlier events, sorted ascending; ties keep log
  order (a new event is inserted after every retained event with the same time);
* ``X[cap, nv]`` -- the aggregated values; ``C[cap, nc]`` -- categorical codes (for distinct);
* ``N[cap]``, ``A[cap, nt, A_LEN]`` -- *time tiles*: the retained entries with time in
  ``[j * tile, (j + 1) * tile)`` form tile ``j``; ``N`` at the tile's last entry is its number
  of entries, and ``A[i, v]`` at its first entry ``i`` the fold of its values of column ``v``
  (:func:`_add`: non-missing count, sum, first value, mean and sum of squared deviations of
  the values less the first);
* ``meta`` -- ``[start, end, max_ts, seen]``; live entries are ``[start, end)``.

Sums, means and standard deviations are *pure functions of the window's contents*: a window
``(lower, t]`` folds its entries in the partly covered tile at each edge one by one and the
tiles it covers whole by their aggregates, in one fixed order (see ``window_step``; nested
windows of an event share the right edge and their common tiles). Which tiles are whole
depends only on ``lower``, ``t`` and the tile width (a plan constant), and a tile's aggregate
only on its entries, so any path that holds the same entries -- replay with any number of
threads, the online path with any micro-batching, a state rebuilt from the recent log at a
server start -- does the same floating-point operations in the same order. (Running prefix
sums, used before, carried the key's whole past: one large value long gone from the window
blurred every later sum by the spacing of floats at its magnitude, differently on a path that
started at another point of the log.) Cost per window: its edge entries plus its whole tiles,
at most about :data:`TILES_PER_WINDOW` for the group's longest summed window.

Invariant (bounded state): an entry with ``ts <= max_ts - horizon`` is never inside any future
window (every window's lower bound is at least ``max_ts - horizon`` and ``max_ts`` only grows),
so it is evicted. ``horizon`` is the group's largest window plus the allowed lateness. A tile
that reaches down to that floor may have lost entries (its aggregate is then stale), but no
window ever covers it whole: a whole tile lies above the window's lower bound.

Per-key label state (``label_query`` / ``label_insert``): ``lts`` -- each label's time
coordinate, sorted ascending (ties in arrival order); ``lka`` -- its ``known_at``; ``lv`` --
its value; ``meta`` as above. A label group over event time uses the labelled event's time as
the coordinate and evicts like a window group (floor: the key's latest event time less the
horizon). A group over known time (``over="known"``) uses ``known_at`` itself, so a window is
a range of ``known_at`` whatever the labelled events' ages, and its floor is the latest event
time of *any* key less the horizon (the online path's clock, a running maximum in replay): a
label ages with the stream even on a key with no events of its own for a while, so each
key's state holds at most the labels known within one horizon of its last update.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Numba's on-disk cache keys a function on its own file only: state.py's compiled functions
# inline these, so after editing this file, touch state.py (the generated row programs carry a
# digest of both, see rows.py), or replay and the online path may run different code.

# meta slots
START, END, MAXTS, SEEN = 0, 1, 2, 3
META_LEN = 4
# "No time yet": below every event time (int64 microseconds) and far enough from int64's
# minimum that subtracting a horizon cannot overflow.
NO_TIME = -(2**62)

# tile aggregate slots: non-missing count, sum, first value c, then the mean and the sum of
# squared deviations from the mean of the values less c
A_K, A_S, A_C, A_M, A_Q = 0, 1, 2, 3, 4
A_LEN = 5
# The tile width of a group is its longest sum/mean/std window over this (see plan.py).
TILES_PER_WINDOW = 64

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
MOMENT_KINDS = ("sum", "mean", "std")

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


@njit(cache=True, nogil=True, inline="always")
def _add(k, s, c, m, q, x, var):  # type: ignore[no-untyped-def]
    """Fold one value into (count, sum, first value, mean and squared deviations of the values
    less the first). Welford's update on values shifted by the first one: the spread of values
    near 1e15 that differ by cents is kept (no cancellation of squares, and the shifted mean is
    representable). ``var=False`` leaves ``c``, ``m``, ``q`` alone (``k`` and ``s`` are the
    same either way)."""
    if var:
        if k == 0.0:
            c = x
        w = 1.0 / (k + 1.0)  # off the dependency chain through m
        y = x - c
        d = y - m
        m += d * w
        q += d * (y - m)
    return k + 1.0, s + x, c, m, q


@njit(cache=True, nogil=True, inline="always")
def _merge(k, s, c, m, q, tk, ts_, tc, tm, tq, var):  # type: ignore[no-untyped-def]
    """Fold a tile's aggregate into the same 5-tuple (Chan et al.'s pairwise update)."""
    if tk == 0.0:
        return k, s, c, m, q
    s += ts_
    if var:
        if k == 0.0:
            c = tc
            m = tm
            q = tq
        else:
            r = tk / (k + tk)
            d = (tm + (tc - c)) - m  # the tile's mean, shifted like ours
            m += d * r
            q += tq + d * d * k * r
    return k + tk, s, c, m, q


@njit(cache=True, nogil=True, inline="always")
def _fold_entries(X, col, lo, hi, var, k, s, c, m, q):  # type: ignore[no-untyped-def]
    """Fold the non-missing values of column ``col`` of entries ``[lo, hi)``, in order."""
    for i in range(lo, hi):
        x = X[i, col]
        if not np.isnan(x):
            k, s, c, m, q = _add(k, s, c, m, q, x, var)
    return k, s, c, m, q


@njit(cache=True, nogil=True, inline="always")
def _fold_tiles_down(N, A, col, i, stop, var, k, s, c, m, q):  # type: ignore[no-untyped-def]
    """Fold the aggregates of the whole tiles made of entries ``[stop, i)``, latest first
    (``N`` at a tile's last entry is its size; ``A`` at its first entry, its aggregate)."""
    while i > stop:
        n = N[i - 1]
        f = i - n if n > 0 else i - 1  # n >= 1 at a tile's last entry
        # Scalar reads (a view of A[f, col] would cost a reference count per tile).
        k, s, c, m, q = _merge(
            k, s, c, m, q,
            A[f, col, A_K], A[f, col, A_S], A[f, col, A_C], A[f, col, A_M], A[f, col, A_Q], var,
        )  # fmt: skip
        i = f
    return k, s, c, m, q


@njit(cache=True, nogil=True, inline="always")
def _fold_tile(ts, X, N, A, start, end, p, tile):  # type: ignore[no-untyped-def]
    """Bring the tile of the entry just inserted at ``p`` up to date (live entries ``[start,
    end)``, the new one included). Appended at the tile's end, the fold continues; otherwise
    the tile is folded again from its first entry: either way its aggregate is the fold of its
    entries in order."""
    j = ts[p] // tile
    a = _search_right(ts, start, p, j * tile - 1)
    b = _search_right(ts, p + 1, end, (j + 1) * tile - 1)
    nt = A.shape[1]
    N[b - 1] = b - a
    if a < p and b == p + 1:
        for v in range(nt):
            x = X[p, v]
            if not np.isnan(x):
                k, s, c, m, q = _add(
                    A[a, v, A_K], A[a, v, A_S], A[a, v, A_C], A[a, v, A_M], A[a, v, A_Q], x, True
                )
                A[a, v, A_K] = k
                A[a, v, A_S] = s
                A[a, v, A_C] = c
                A[a, v, A_M] = m
                A[a, v, A_Q] = q
        return
    for v in range(nt):
        k, s, c, m, q = _fold_entries(X, v, a, b, True, 0.0, 0.0, 0.0, 0.0, 0.0)
        A[a, v, A_K] = k
        A[a, v, A_S] = s
        A[a, v, A_C] = c
        A[a, v, A_M] = m
        A[a, v, A_Q] = q


@njit(cache=True, nogil=True, inline="always")
def _wants_var_here(specs, s, s_hi, window, col):  # type: ignore[no-untyped-def]
    """Does a spec row from ``s`` on, of this window, ask for the std of column ``col``?"""
    while s < s_hi and specs[s, 1] == window:
        if specs[s, 0] == K_STD and specs[s, 2] == col:
            return True
        s += 1
    return False


@njit(cache=True, nogil=True, inline="always")
def _wants_var(specs, s, s_hi, col):  # type: ignore[no-untyped-def]
    """Does a spec row in ``specs[s:s_hi]`` ask for the std of column ``col``?"""
    while s < s_hi:
        if specs[s, 0] == K_STD and specs[s, 2] == col:
            return True
        s += 1
    return False


@njit(cache=True, nogil=True, inline="always")
def window_step(  # type: ignore[no-untyped-def]
    t, xin, voff, cin, coff, rin, ts, X, C, N, A, meta, specs, s_lo, s_hi, horizon, tile,
    out, row,
):  # fmt: skip
    """Compute the window features of one event, then fold the event into the state.

    The event's aggregated values are ``xin[rin, voff:voff + nv]`` and its categorical codes
    ``cin[rin, coff:coff + nc]``; its features go to ``out[o, row]`` for the spec rows
    ``specs[s_lo:s_hi]``. ``tile`` is the group's tile width (0: no sum, mean or std, and no
    tiles kept). Requires ``meta[END] < len(ts)`` (the caller grows the buffers).
    """
    start = meta[START]
    end = meta[END]
    seen = meta[SEEN] > 0
    floor = meta[MAXTS] - horizon if seen else t - horizon - 1
    hi = _search_right(ts, start, end, t)
    lo = hi
    lower = t
    prev_window = -1
    mcol = -1  # the column whose moments (k, s1, q) are at hand for this window
    mvar = False
    k = s1 = q = 0.0
    # The chain: the right edge and the whole tiles down to entry ch_i of column ch_col, folded
    # (windows come shortest first, and a longer one folds the same, then more tiles).
    ch_col = -1
    ch_var = False
    ch_i = 0
    ck = cs = cc = cm = cq = 0.0
    for s in range(s_lo, s_hi):
        kind = specs[s, 0]
        if specs[s, 1] != prev_window:  # specs are sorted by window: search once per window
            prev_window = specs[s, 1]
            lower = t - prev_window
            if floor > lower:
                lower = floor
            lo = _search_right(ts, start, hi, lower)
            mcol = -1
        col = specs[s, 2]
        o = specs[s, 3]
        n = hi - lo
        if kind == K_COUNT:
            out[o, row] = n
        elif kind in (K_SUM, K_MEAN, K_STD):
            if col != mcol or (kind == K_STD and not mvar):
                # The one order of operations for the window (lower, t]: the entries of the
                # partly covered tile at t, then the tiles that lie whole inside the window by
                # their aggregates (latest first), then the entries of the partly covered tile
                # at the lower edge. Which tiles are whole depends on lower, t and the tile
                # width only, so this is a function of the window's entries.
                # The chain keeps the spread if a longer window will want it; this window's
                # own entries only if it does (k and the sum come out the same either way).
                mvar = kind == K_STD or _wants_var_here(specs, s + 1, s_hi, prev_window, col)
                chain_var = mvar or _wants_var(specs, s + 1, s_hi, col)
                first = (lower + tile) // tile  # first tile starting after lower
                last = (t + 1) // tile - 1  # last tile ending at or before t
                if first <= last:
                    a = _search_right(ts, lo, hi, first * tile - 1)
                    if not (ch_col == col and ch_i >= a and (ch_var or not chain_var)):
                        b = _search_right(ts, a, hi, (last + 1) * tile - 1)
                        ch_col, ch_var, ch_i = col, chain_var, b
                        ck, cs, cc, cm, cq = _fold_entries(
                            X, col, b, hi, chain_var, 0.0, 0.0, 0.0, 0.0, 0.0
                        )
                    ck, cs, cc, cm, cq = _fold_tiles_down(
                        N, A, col, ch_i, a, ch_var, ck, cs, cc, cm, cq
                    )
                    ch_i = a
                    k, s1, _, _, q = _fold_entries(X, col, lo, a, mvar, ck, cs, cc, cm, cq)
                else:
                    k, s1, _, _, q = _fold_entries(X, col, lo, hi, mvar, 0.0, 0.0, 0.0, 0.0, 0.0)
                mcol = col
            if kind == K_SUM:
                out[o, row] = s1
            elif kind == K_MEAN:
                out[o, row] = s1 / k if k > 0 else np.nan
            else:
                out[o, row] = np.sqrt(q / (k - 1.0)) if k > 1 else np.nan
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
    nt = A.shape[1]
    new_max = t if (not seen or t > meta[MAXTS]) else meta[MAXTS]
    meta[MAXTS] = new_max
    meta[SEEN] = 1
    floor = new_max - horizon
    while start < end and ts[start] <= floor:
        start += 1
    meta[START] = start
    if t <= floor:
        return  # too late to matter to any future window: nothing to retain
    p = _search_right(ts, start, end, t)
    for j in range(end, p, -1):
        ts[j] = ts[j - 1]
        for v in range(nv):
            X[j, v] = X[j - 1, v]
        for v in range(nc):
            C[j, v] = C[j - 1, v]
        if tile > 0:
            N[j] = N[j - 1]
            for v in range(nt):
                for a in range(A_LEN):
                    A[j, v, a] = A[j - 1, v, a]
    ts[p] = t
    for v in range(nv):
        X[p, v] = xin[rin, voff + v]
    for v in range(nc):
        C[p, v] = cin[rin, coff + v]
    meta[END] = end + 1
    if tile > 0:
        _fold_tile(ts, X, N, A, start, end + 1, p, tile)


@njit(cache=True, nogil=True)
def window_replay(  # type: ignore[no-untyped-def]
    ts_all, V, voff, nv, C_all, coff, nc, order, bounds, g_lo, g_hi, specs, horizon, tile, out
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
    N = np.zeros(longest + 1, np.int64)
    A = np.zeros((longest + 1, nv if tile > 0 else 0, A_LEN), np.float64)
    meta = np.zeros(META_LEN, np.int64)
    n_specs = specs.shape[0]
    for g in range(g_lo, g_hi):
        meta[:] = 0
        for i in range(bounds[g], bounds[g + 1]):
            r = order[i]
            window_step(
                ts_all[r], V, voff, C_all, coff, r, ts, X, C, N, A, meta,
                specs, 0, n_specs, horizon, tile, out, r,
            )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _label_floor(lmeta, horizon, known, clock):  # type: ignore[no-untyped-def]
    """The retention floor of a key's label state: no future window reaches down to it.

    Over event time, the key's latest event time less the horizon (as for window features);
    over known time, the latest event time of *any* key (``clock``) less the horizon: a
    ``known_at`` is a time on the one clock that every key shares, so it ages with the whole
    stream, also for a key that has no events for a while but keeps receiving labels."""
    if known:
        return clock - horizon
    return lmeta[MAXTS] - horizon if lmeta[SEEN] > 0 else NO_TIME


@njit(cache=True, nogil=True)
def label_query(t, clock, lts, lka, lv, lmeta, specs, s_lo, s_hi, horizon, known, out, row):  # type: ignore[no-untyped-def]
    """Label-aware features of one event at time ``t``, then advance the key's high-water mark.

    Counts labels with ``known_at < t`` whose time coordinate ``lts`` (the labelled event's
    time, or for a ``known`` group the ``known_at`` itself) is in the window ``(t - w, t]``
    and above the retention floor (:func:`_label_floor`; ``clock`` is the latest event time
    of any key before this event, :data:`NO_TIME` if none). Over known time that is
    ``t - w < known_at < t``.
    """
    start = lmeta[START]
    end = lmeta[END]
    floor = _label_floor(lmeta, horizon, known, clock)
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
    lmeta[MAXTS] = t if (lmeta[SEEN] == 0 or t > lmeta[MAXTS]) else lmeta[MAXTS]
    lmeta[SEEN] = 1
    floor = _label_floor(lmeta, horizon, known, t if t > clock else clock)
    while start < end and lts[start] <= floor:
        start += 1
    lmeta[START] = start


@njit(cache=True, nogil=True)
def label_insert(coord, known_at, value, lts, lka, lv, lmeta, horizon, known, clock):  # type: ignore[no-untyped-def]
    """Fold one label into the key's label state, in order of its time coordinate ``coord``
    (the labelled event's time, or ``known_at`` for a ``known`` group); ties keep arrival
    order. Entries below the retention floor are dropped first.

    Requires ``lmeta[END] < len(lts)``.
    """
    start = lmeta[START]
    end = lmeta[END]
    floor = _label_floor(lmeta, horizon, known, clock)
    while start < end and lts[start] <= floor:
        start += 1
    lmeta[START] = start
    if coord <= floor:
        return  # outside every future window
    p = _search_right(lts, start, end, coord)
    for j in range(end, p, -1):
        lts[j] = lts[j - 1]
        lka[j] = lka[j - 1]
        lv[j] = lv[j - 1]
    lts[p] = coord
    lka[p] = known_at
    lv[p] = value
    lmeta[END] = end + 1


@njit(cache=True, nogil=True)
def label_replay(  # type: ignore[no-untyped-def]
    ts_all, clock_all, order, bounds, l_c, l_ka, l_v, l_bounds, specs, horizon, known, out
):
    """Replay label-aware features key by key: fold the key's labels in, then run its events.

    Labels are filtered by ``known_at < t`` at query time, so folding them in first gives the
    same answer as folding each in as it arrives live. ``clock_all[r]`` is the latest event
    time of any key before row ``r`` in the log (:data:`NO_TIME` for none): the clock the
    online path has when it reaches that event.
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
            label_insert(l_c[j], l_ka[j], l_v[j], lts, lka, lv, lmeta, horizon, known, NO_TIME)
        for i in range(bounds[g], bounds[g + 1]):
            r = order[i]
            label_query(
                ts_all[r], clock_all[r], lts, lka, lv, lmeta, specs, 0, n_specs, horizon,
                known, out, r,
            )  # fmt: skip


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
