"""Live per-key state of the online path, owned by compiled code.

One :class:`LiveState` holds the buffers of every key of every group (layout in
:mod:`modelminder.features.kernel`) in typed lists indexed by a *slot*, plus the plan's spec
tables. Python maps entity keys to slots; one compiled call per event (:func:`online_step`)
then runs every group's step. Keeping the state inside one object makes that call cheap: a
single argument instead of a dozen arrays per group.

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
    END,
    META_LEN,
    START,
    label_insert,
    label_query,
    window_step,
)

INITIAL_CAPACITY = 8

_i1 = types.int64[::1]
_f1 = types.float64[::1]
_i2 = types.int64[:, ::1]
_f2 = types.float64[:, ::1]

FIELDS: list[tuple[str, Any]] = [
    # window slots
    ("wts", types.ListType(_i1)),
    ("wX", types.ListType(_f2)),
    ("wC", types.ListType(_i2)),
    ("wP0", types.ListType(_f2)),
    ("wP1", types.ListType(_f2)),
    ("wP2", types.ListType(_f2)),
    ("wmeta", types.ListType(_i1)),
    ("wshift", types.ListType(_f1)),
    # label slots
    ("lts", types.ListType(_i1)),
    ("lka", types.ListType(_i1)),
    ("lv", types.ListType(_f1)),
    ("lmeta", types.ListType(_i1)),
    # the plan: window groups (spec rows wspecs[wsb[g]:wsb[g + 1]]) and label groups
    ("wspecs", _i2),
    ("wsb", _i1),
    ("whor", _i1),
    ("voff", _i1),
    ("nv", _i1),
    ("coff", _i1),
    ("nc", _i1),
    ("lspecs", _i2),
    ("lsb", _i1),
    ("lhor", _i1),
]


@structref.register
class LiveStateType(types.StructRef):
    def preprocess_fields(self, fields: Any) -> Any:
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class LiveState(structref.StructRefProxy):  # type: ignore[misc]
    """Python handle of the compiled state (fields are read in compiled code only)."""


structref.define_proxy(LiveState, LiveStateType, [name for name, _ in FIELDS])
STATE_TYPE = LiveStateType(FIELDS)


@njit(cache=True)
def new_state(wspecs, wsb, whor, voff, nv, coff, nc, lspecs, lsb, lhor):  # type: ignore[no-untyped-def]
    """An empty state for a plan's spec tables."""
    st = structref.new(STATE_TYPE)
    st.wts = List.empty_list(_i1)
    st.wX = List.empty_list(_f2)
    st.wC = List.empty_list(_i2)
    st.wP0 = List.empty_list(_f2)
    st.wP1 = List.empty_list(_f2)
    st.wP2 = List.empty_list(_f2)
    st.wmeta = List.empty_list(_i1)
    st.wshift = List.empty_list(_f1)
    st.lts = List.empty_list(_i1)
    st.lka = List.empty_list(_i1)
    st.lv = List.empty_list(_f1)
    st.lmeta = List.empty_list(_i1)
    st.wspecs = wspecs
    st.wsb = wsb
    st.whor = whor
    st.voff = voff
    st.nv = nv
    st.coff = coff
    st.nc = nc
    st.lspecs = lspecs
    st.lsb = lsb
    st.lhor = lhor
    return st


@njit(cache=True)
def _append_window(st, ts, X, C, P0, P1, P2, meta, shift):  # type: ignore[no-untyped-def]
    st.wts.append(ts)
    st.wX.append(X)
    st.wC.append(C)
    st.wP0.append(P0)
    st.wP1.append(P1)
    st.wP2.append(P2)
    st.wmeta.append(meta)
    st.wshift.append(shift)
    return len(st.wts) - 1


@njit(cache=True)
def add_window_slot(st, g):  # type: ignore[no-untyped-def]
    """A new, empty key of window group ``g``; returns its slot."""
    cap = INITIAL_CAPACITY
    nv = st.nv[g]
    nc = st.nc[g]
    return _append_window(
        st,
        np.zeros(cap, np.int64),
        np.zeros((cap, nv), np.float64),
        np.zeros((cap, nc), np.int64),
        np.zeros((cap + 1, nv), np.float64),
        np.zeros((cap + 1, nv), np.float64),
        np.zeros((cap + 1, nv), np.float64),
        np.zeros(META_LEN, np.int64),
        np.zeros(nv, np.float64),
    )


@njit(cache=True)
def add_label_slot(st):  # type: ignore[no-untyped-def]
    """A new, empty key of a label group; returns its slot."""
    cap = INITIAL_CAPACITY
    st.lts.append(np.zeros(cap, np.int64))
    st.lka.append(np.zeros(cap, np.int64))
    st.lv.append(np.zeros(cap, np.float64))
    st.lmeta.append(np.zeros(META_LEN, np.int64))
    return len(st.lts) - 1


@njit(cache=True, nogil=True)
def _resize_window(st, s, new_cap):  # type: ignore[no-untyped-def]
    """Move the live entries of slot ``s`` to buffers of ``new_cap`` (values verbatim)."""
    meta = st.wmeta[s]
    start = meta[START]
    end = meta[END]
    live = end - start
    old_X = st.wX[s]
    nv = old_X.shape[1]
    nc = st.wC[s].shape[1]
    ts = np.zeros(new_cap, np.int64)
    ts[:live] = st.wts[s][start:end]
    X = np.zeros((new_cap, nv), np.float64)
    X[:live] = old_X[start:end]
    C = np.zeros((new_cap, nc), np.int64)
    C[:live] = st.wC[s][start:end]
    P0 = np.zeros((new_cap + 1, nv), np.float64)
    P0[: live + 1] = st.wP0[s][start : end + 1]
    P1 = np.zeros((new_cap + 1, nv), np.float64)
    P1[: live + 1] = st.wP1[s][start : end + 1]
    P2 = np.zeros((new_cap + 1, nv), np.float64)
    P2[: live + 1] = st.wP2[s][start : end + 1]
    st.wts[s] = ts
    st.wX[s] = X
    st.wC[s] = C
    st.wP0[s] = P0
    st.wP1[s] = P1
    st.wP2[s] = P2
    meta[START] = 0
    meta[END] = live


@njit(cache=True, nogil=True)
def _make_room_window(st, s):  # type: ignore[no-untyped-def]
    meta = st.wmeta[s]
    cap = st.wts[s].shape[0]
    if meta[END] < cap:
        return
    live = meta[END] - meta[START]
    _resize_window(st, s, cap if live < cap // 2 else cap * 2)


@njit(cache=True, nogil=True)
def _make_room_label(st, s):  # type: ignore[no-untyped-def]
    meta = st.lmeta[s]
    cap = st.lts[s].shape[0]
    if meta[END] < cap:
        return
    start = meta[START]
    live = meta[END] - start
    new_cap = cap if live < cap // 2 else cap * 2
    ts = np.zeros(new_cap, np.int64)
    ts[:live] = st.lts[s][start : start + live]
    ka = np.zeros(new_cap, np.int64)
    ka[:live] = st.lka[s][start : start + live]
    v = np.zeros(new_cap, np.float64)
    v[:live] = st.lv[s][start : start + live]
    st.lts[s] = ts
    st.lka[s] = ka
    st.lv[s] = v
    meta[START] = 0
    meta[END] = live


@njit(cache=True, nogil=True)
def online_step(st, wslots, lslots, t, V, C, out):  # type: ignore[no-untyped-def]
    """Every group's features of one event (values ``V[0]``, codes ``C[0]``) into
    ``out[:, 0]``, then fold the event into its keys' window state."""
    for g in range(st.whor.shape[0]):
        s = wslots[g]
        _make_room_window(st, s)
        window_step(
            t, V, st.voff[g], C, st.coff[g], 0, st.wts[s], st.wX[s], st.wC[s], st.wP0[s],
            st.wP1[s], st.wP2[s], st.wmeta[s], st.wshift[s], st.wspecs, st.wsb[g],
            st.wsb[g + 1], st.whor[g], out, 0,
        )  # fmt: skip
    for g in range(st.lhor.shape[0]):
        s = lslots[g]
        label_query(
            t, st.lts[s], st.lka[s], st.lv[s], st.lmeta[s], st.lspecs, st.lsb[g],
            st.lsb[g + 1], st.lhor[g], out, 0,
        )  # fmt: skip


@njit(cache=True, nogil=True)
def add_label(st, lslots, ets, known_at, value):  # type: ignore[no-untyped-def]
    """Fold one label (of an event at ``ets``) into its keys' label state."""
    for g in range(st.lhor.shape[0]):
        s = lslots[g]
        _make_room_label(st, s)
        label_insert(ets, known_at, value, st.lts[s], st.lka[s], st.lv[s], st.lmeta[s], st.lhor[g])


@njit(cache=True)
def max_window_size(st):  # type: ignore[no-untyped-def]
    """Largest number of entries retained for any one key of any window group."""
    best = 0
    for s in range(len(st.wmeta)):
        meta = st.wmeta[s]
        best = max(best, meta[END] - meta[START])
    return best


@njit(cache=True)
def rebuild_window_group(st, g, ts_all, V, C_all, order, bounds):  # type: ignore[no-untyped-def]
    """Replay each key segment of window group ``g`` and keep its final buffers as a new slot
    (segment ``k`` becomes slot ``first + k``); returns ``first``."""
    nv = st.nv[g]
    nc = st.nc[g]
    voff = st.voff[g]
    coff = st.coff[g]
    scratch = np.empty((st.wspecs[:, 3].max() + 1, 1), np.float64)
    first = len(st.wts)
    for k in range(bounds.shape[0] - 1):
        m = bounds[k + 1] - bounds[k]
        cap = max(INITIAL_CAPACITY, m)
        ts = np.zeros(cap, np.int64)
        X = np.zeros((cap, nv), np.float64)
        C = np.zeros((cap, nc), np.int64)
        P0 = np.zeros((cap + 1, nv), np.float64)
        P1 = np.zeros((cap + 1, nv), np.float64)
        P2 = np.zeros((cap + 1, nv), np.float64)
        meta = np.zeros(META_LEN, np.int64)
        shift = np.zeros(nv, np.float64)
        for i in range(bounds[k], bounds[k + 1]):
            r = order[i]
            window_step(
                ts_all[r], V, voff, C_all, coff, r, ts, X, C, P0, P1, P2, meta, shift,
                st.wspecs, st.wsb[g], st.wsb[g + 1], st.whor[g], scratch, 0,
            )  # fmt: skip
        s = _append_window(st, ts, X, C, P0, P1, P2, meta, shift)
        live = meta[END] - meta[START]
        if cap > 2 * max(INITIAL_CAPACITY, live):
            _resize_window(st, s, 2 * max(INITIAL_CAPACITY, live))
    return first


@njit(cache=True)
def rebuild_label_group(st, g, ts_all, order, bounds, l_ets, l_ka, l_v, l_bounds):  # type: ignore[no-untyped-def]
    """Fold each key's labels in and run its events (to advance the retention floor); keep
    the result as a new slot per segment; returns the first slot."""
    scratch = np.empty((st.lspecs[:, 3].max() + 1, 1), np.float64)
    first = len(st.lts)
    for k in range(bounds.shape[0] - 1):
        m = l_bounds[k + 1] - l_bounds[k]
        cap = max(INITIAL_CAPACITY, m + 1)
        lts = np.zeros(cap, np.int64)
        lka = np.zeros(cap, np.int64)
        lv = np.zeros(cap, np.float64)
        lmeta = np.zeros(META_LEN, np.int64)
        for j in range(l_bounds[k], l_bounds[k + 1]):
            label_insert(l_ets[j], l_ka[j], l_v[j], lts, lka, lv, lmeta, st.lhor[g])
        for i in range(bounds[k], bounds[k + 1]):
            r = order[i]
            label_query(
                ts_all[r], lts, lka, lv, lmeta, st.lspecs, st.lsb[g], st.lsb[g + 1],
                st.lhor[g], scratch, 0,
            )  # fmt: skip
        st.lts.append(lts)
        st.lka.append(lka)
        st.lv.append(lv)
        st.lmeta.append(lmeta)
    return first
