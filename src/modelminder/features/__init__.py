"""Features: the definitions (a small DSL) and the one engine that computes them.

Owns: :class:`~modelminder.features.dsl.FeatureSet` and its parts (row computations, windows
over event time per entity key, label-aware windows), the compiled
:class:`~modelminder.features.plan.Plan`, and the engine with its two faces --
:func:`~modelminder.features.replay.replay_frame` (a whole history at once, vectorized) and
:class:`~modelminder.features.online.OnlineEngine` (one event at a time, for serving). Both run
the same kernels (:mod:`.kernel`) over the same per-key state (:mod:`.state`).

Promises: point-in-time correctness (an event's features see only earlier-logged events of its
key in ``(t - window, t]`` and labels known before ``t``: of its key's events in that window,
or, over known time, those that became known in ``(t - window, t)``); replay equals online,
counts exactly and floats bit for bit; state per key bounded by the largest window.

Never: reads the event log, a database, files or the clock. The engine takes frames and
records; :mod:`modelminder.logreplay` feeds it from the log, and serving feeds it live.
"""
