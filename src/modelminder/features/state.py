"""Live per-key state of the online path, owned by compiled code.

One :class:`LiveState` holds the buffers of every key of every group (layout in
:mod:`modelminder.features.kernel`, packed into two flat buffers per key) in typed lists
indexed by a *slot*, plus the plan's spec tables. Python maps entity keys to slots; one
compiled call per event (:func:`online_step`) then runs every group's step. Keeping the state
inside one object makes that call cheap: a single argument instead of a dozen arrays per group.

State can also be rebuilt in bulk from a replay (:func:`rebuild_window_group`,
:func:`rebuild_label_group`): the same step function runs over each key's events and the final
buffers are kept, trimmed to what is live.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.experimental import structref
from numba.typed import List

from modelminder.features.kernel import (
    A_LEN,
    END,
    META_LEN,
    NO_TIME,
    START,
    label_insert,
    label_query,
    window_step,
)

INITIAL_CAPACITY = 8
CAP = META_LEN  # the slot's capacity is stored right after its meta fields
HEADER = META_LEN + 1

_i1 = types.int64[::1]
_f1 = types.float64[::1]
_i2 = types.int64[:, ::1]

# Each window slot is two flat buffers, so touching a key touches two allocations:
#   ib = [meta (META_LEN) | capacity | ts (cap) | N (cap) | C (cap x nc)]
#   fb = [X (cap x nv) | A (cap x nt x A_LEN)]   (nt = nv if the group keeps tiles, else 0)
# Each label slot: ib = [meta | capacity | coordinate (cap) | known_at (cap)], fb = [value (cap)]
# (the coordinate is the labelled event's time, or known_at for a group over known time).
FIELDS: list[tuple[str, Any]] = [
    ("wI", types.ListType(_i1)),  # type: ignore[no-untyped-call]
    ("wD", types.ListType(_f1)),  # type: ignore[no-untyped-call]
    ("lI", types.ListType(_i1)),  # type: ignore[no-untyped-call]
    ("lD", types.ListType(_f1)),  # type: ignore[no-untyped-call]
    # the plan: window groups (spec rows wspecs[wsb[g]:wsb[g + 1]]) and label groups
    ("wspecs", _i2),
    ("wsb", _i1),
    ("whor", _i1),
    ("wtile", _i1),
    ("voff", _i1),
    ("nv", _i1),
    ("coff", _i1),
    ("nc", _i1),
    ("lspecs", _i2),
    ("lsb", _i1),
    ("lhor", _i1),
    ("lknown", _i1),  # 1: the label group's windows are over known time
    # clock[0]: the latest event time of any key processed so far (NO_TIME before the first):
    # the retention floor of the groups over known time moves with it.
    ("clock", _i1),
]


@structref.register
class LiveStateType(types.StructRef):
    def preprocess_fields(self, fields: Any) -> Any:
        unliteral = types.unliteral
        return tuple((name, unliteral(typ)) for name, typ in fields)  # type: ignore[no-untyped-call]


class LiveState(structref.StructRefProxy):
    """Python handle of the compiled state (fields are read in compiled code only)."""


_NAMES = [name for name, _ in FIELDS]
structref.define_proxy(LiveState, LiveStateType, _NAMES)  # type: ignore[no-untyped-call]
STATE_TYPE = LiveStateType(FIELDS)  # type: ignore[no-untyped-call]


@njit(cache=True)
def new_state(wspecs, wsb, whor, wtile, voff, nv, coff, nc, lspecs, lsb, lhor, lknown):  # type: ignore[no-untyped-def]
    """An empty state for a plan's spec tables."""
    st = structref.new(STATE_TYPE)  # type: ignore[call-arg,var-annotated]
    st.wI = List.empty_list(_i1)
    st.wD = List.empty_list(_f1)
    st.lI = List.empty_list(_i1)
    st.lD = List.empty_list(_f1)
    st.wspecs = wspecs
    st.wsb = wsb
    st.whor = whor
    st.wtile = wtile
    st.voff = voff
    st.nv = nv
    st.coff = coff
    st.nc = nc
    st.lspecs = lspecs
    st.lsb = lsb
    st.lhor = lhor
    st.lknown = lknown
    st.clock = np.full(1, NO_TIME, np.int64)
    return st


@njit(cache=True, nogil=True, inline="always")
def _window_buffers(cap, nv, nc, nt):  # type: ignore[no-untyped-def]
    ib = np.zeros(HEADER + 2 * cap + cap * nc, np.int64)
    ib[CAP] = cap
    fb = np.zeros(cap * nv + cap * nt * A_LEN, np.float64)
    return ib, fb


@njit(cache=True, nogil=True, inline="always")
def _window_views(ib, fb, nv, nc, nt):  # type: ignore[no-untyped-def]
    """(ts, X, C, N, A, meta) views of a slot's two buffers."""
    cap = ib[CAP]
    ts = ib[HEADER : HEADER + cap]
    N = ib[HEADER + cap : HEADER + 2 * cap]
    C = ib[HEADER + 2 * cap : HEADER + 2 * cap + cap * nc].reshape((cap, nc))
    o = cap * nv
    X = fb[:o].reshape((cap, nv))
    A = fb[o : o + cap * nt * A_LEN].reshape((cap, nt, A_LEN))
    return ts, X, C, N, A, ib[:META_LEN]


@njit(cache=True, nogil=True, inline="always")
def _tiled(st, g):  # type: ignore[no-untyped-def]
    """Columns of group ``g`` that keep tile aggregates: all of them, or none."""
    return st.nv[g] if st.wtile[g] > 0 else 0


@njit(cache=True, nogil=True, inline="always")
def _label_buffers(cap):  # type: ignore[no-untyped-def]
    ib = np.zeros(HEADER + 2 * cap, np.int64)
    ib[CAP] = cap
    return ib, np.zeros(cap, np.float64)


@njit(cache=True, nogil=True, inline="always")
def _label_views(ib, fb):  # type: ignore[no-untyped-def]
    """(ts, known_at, value, meta) views of a label slot's buffers."""
    cap = ib[CAP]
    return ib[HEADER : HEADER + cap], ib[HEADER + cap : HEADER + 2 * cap], fb, ib[:META_LEN]


@njit(cache=True)
def add_window_slot(st, g):  # type: ignore[no-untyped-def]
    """A new, empty key of window group ``g``; returns its slot."""
    ib, fb = _window_buffers(INITIAL_CAPACITY, st.nv[g], st.nc[g], _tiled(st, g))
    st.wI.append(ib)
    st.wD.append(fb)
    return len(st.wI) - 1


@njit(cache=True)
def add_label_slot(st):  # type: ignore[no-untyped-def]
    """A new, empty key of a label group; returns its slot."""
    ib, fb = _label_buffers(INITIAL_CAPACITY)
    st.lI.append(ib)
    st.lD.append(fb)
    return len(st.lI) - 1


@njit(cache=True, nogil=True)
def _resize_window(st, s, nv, nc, nt, new_cap):  # type: ignore[no-untyped-def]
    """Move the live entries of slot ``s`` to buffers of ``new_cap`` (values verbatim)."""
    ts, X, C, N, A, meta = _window_views(st.wI[s], st.wD[s], nv, nc, nt)
    start = meta[START]
    end = meta[END]
    live = end - start
    ib, fb = _window_buffers(new_cap, nv, nc, nt)
    ts2, X2, C2, N2, A2, meta2 = _window_views(ib, fb, nv, nc, nt)
    meta2[:] = meta
    ts2[:live] = ts[start:end]
    X2[:live] = X[start:end]
    C2[:live] = C[start:end]
    N2[:live] = N[start:end]
    A2[:live] = A[start:end]
    meta2[START] = 0
    meta2[END] = live
    st.wI[s] = ib
    st.wD[s] = fb


@njit(cache=True, nogil=True)
def _resize_label(st, s, new_cap):  # type: ignore[no-untyped-def]
    ts, ka, v, meta = _label_views(st.lI[s], st.lD[s])
    start = meta[START]
    live = meta[END] - start
    ib, fb = _label_buffers(new_cap)
    ts2, ka2, v2, meta2 = _label_views(ib, fb)
    meta2[:] = meta
    ts2[:live] = ts[start : start + live]
    ka2[:live] = ka[start : start + live]
    v2[:live] = v[start : start + live]
    meta2[START] = 0
    meta2[END] = live
    st.lI[s] = ib
    st.lD[s] = fb


@njit(cache=True, nogil=True, inline="always")
def _grown(cap, live):  # type: ignore[no-untyped-def]
    """Capacity after a full buffer: compact in place when at most half is live, else double."""
    return cap if live < cap // 2 else cap * 2


@njit(cache=True, nogil=True)
def online_step(st, wslots, lslots, t, V, C, out):  # type: ignore[no-untyped-def]
    """Every group's features of one event (values ``V[0]``, codes ``C[0]``) into
    ``out[:, 0]``, then fold the event into its keys' window state."""
    for g in range(st.whor.shape[0]):
        s = wslots[g]
        nv = st.nv[g]
        nc = st.nc[g]
        nt = _tiled(st, g)
        ib = st.wI[s]
        if ib[END] >= ib[CAP]:
            _resize_window(st, s, nv, nc, nt, _grown(ib[CAP], ib[END] - ib[START]))
            ib = st.wI[s]
        ts, X, Cs, N, A, meta = _window_views(ib, st.wD[s], nv, nc, nt)
        window_step(
            t, V, st.voff[g], C, st.coff[g], 0, ts, X, Cs, N, A, meta,
            st.wspecs, st.wsb[g], st.wsb[g + 1], st.whor[g], st.wtile[g], out, 0,
        )  # fmt: skip
    clock = st.clock[0]
    for g in range(st.lhor.shape[0]):
        s = lslots[g]
        lts, lka, lv, lmeta = _label_views(st.lI[s], st.lD[s])
        label_query(
            t, clock, lts, lka, lv, lmeta, st.lspecs, st.lsb[g], st.lsb[g + 1], st.lhor[g],
            st.lknown[g] > 0, out, 0,
        )  # fmt: skip
    if t > clock:
        st.clock[0] = t


@njit(cache=True, nogil=True)
def add_label(st, lslots, ets, known_at, value):  # type: ignore[no-untyped-def]
    """Fold one label (of an event at ``ets``) into its keys' label state."""
    for g in range(st.lhor.shape[0]):
        s = lslots[g]
        ib = st.lI[s]
        if ib[END] >= ib[CAP]:
            _resize_label(st, s, _grown(ib[CAP], ib[END] - ib[START]))
        lts, lka, lv, lmeta = _label_views(st.lI[s], st.lD[s])
        known = st.lknown[g] > 0
        coord = known_at if known else ets
        label_insert(coord, known_at, value, lts, lka, lv, lmeta, st.lhor[g], known, st.clock[0])


@njit(cache=True)
def max_window_size(st):  # type: ignore[no-untyped-def]
    """Largest number of entries retained for any one key of any window group."""
    best = 0
    for s in range(len(st.wI)):
        ib = st.wI[s]
        best = max(best, ib[END] - ib[START])
    return best


@njit(cache=True)
def rebuild_window_group(st, g, ts_all, V, C_all, order, bounds):  # type: ignore[no-untyped-def]
    """Replay each key segment of window group ``g`` and keep its final buffers as a new slot
    (segment ``k`` becomes slot ``first + k``); returns ``first``."""
    nv = st.nv[g]
    nc = st.nc[g]
    nt = _tiled(st, g)
    voff = st.voff[g]
    coff = st.coff[g]
    scratch = np.empty((st.wspecs[:, 3].max() + 1, 1), np.float64)
    first = len(st.wI)
    for k in range(bounds.shape[0] - 1):
        m = bounds[k + 1] - bounds[k]
        ib, fb = _window_buffers(max(INITIAL_CAPACITY, m), nv, nc, nt)
        ts, X, C, N, A, meta = _window_views(ib, fb, nv, nc, nt)
        for i in range(bounds[k], bounds[k + 1]):
            r = order[i]
            window_step(
                ts_all[r], V, voff, C_all, coff, r, ts, X, C, N, A, meta,
                st.wspecs, st.wsb[g], st.wsb[g + 1], st.whor[g], st.wtile[g], scratch, 0,
            )  # fmt: skip
        st.wI.append(ib)
        st.wD.append(fb)
        live = meta[END] - meta[START]
        if ib[CAP] > 2 * max(INITIAL_CAPACITY, live):
            _resize_window(st, len(st.wI) - 1, nv, nc, nt, 2 * max(INITIAL_CAPACITY, live))
    return first


@njit(cache=True)
def max_label_size(st):  # type: ignore[no-untyped-def]
    """Largest number of labels retained for any one key of any label group."""
    best = 0
    for s in range(len(st.lI)):
        ib = st.lI[s]
        best = max(best, ib[END] - ib[START])
    return best


@njit(cache=True)
def set_clock(st, t):  # type: ignore[no-untyped-def]
    """Set the latest event time seen (after a bulk rebuild)."""
    st.clock[0] = t


@njit(cache=True)
def rebuild_label_group(st, g, ts_all, clock_all, order, bounds, l_c, l_ka, l_v, l_bounds):  # type: ignore[no-untyped-def]
    """Fold each key's labels in and run its events (to advance the retention floor); keep
    the result as a new slot per label segment; returns the first slot.

    ``l_bounds`` may list more segments than ``bounds``: keys with labels but no events (a
    label over known time of an event older than the events replayed). Call after
    :func:`set_clock`: entries below the floor the state's clock sets are dropped, and each
    slot is trimmed to about twice what stays live, as after live updates.
    """
    scratch = np.empty((st.lspecs[:, 3].max() + 1, 1), np.float64)
    first = len(st.lI)
    known = st.lknown[g] > 0
    horizon = st.lhor[g]
    n_events = bounds.shape[0] - 1
    for k in range(l_bounds.shape[0] - 1):
        m = l_bounds[k + 1] - l_bounds[k]
        ib, fb = _label_buffers(max(INITIAL_CAPACITY, m + 1))
        lts, lka, lv, lmeta = _label_views(ib, fb)
        for j in range(l_bounds[k], l_bounds[k + 1]):
            label_insert(l_c[j], l_ka[j], l_v[j], lts, lka, lv, lmeta, horizon, known, NO_TIME)
        if k < n_events:
            for i in range(bounds[k], bounds[k + 1]):
                r = order[i]
                label_query(
                    ts_all[r], clock_all[r], lts, lka, lv, lmeta, st.lspecs, st.lsb[g],
                    st.lsb[g + 1], horizon, known, scratch, 0,
                )  # fmt: skip
        if known:  # the floor of the clock the live state continues from
            start = lmeta[START]
            while start < lmeta[END] and lts[start] <= st.clock[0] - horizon:
                start += 1
            lmeta[START] = start
        st.lI.append(ib)
        st.lD.append(fb)
        live = lmeta[END] - lmeta[START]
        if ib[CAP] > 2 * max(INITIAL_CAPACITY, live):
            _resize_label(st, len(st.lI) - 1, 2 * max(INITIAL_CAPACITY, live))
    return first
