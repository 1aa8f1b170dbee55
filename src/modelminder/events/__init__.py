"""Events: the schema every input is checked against, and the append-only log.

Owns: the event schema and validation (:mod:`.schema`, for every door: HTTP, ``minder
ingest``, the Python API); the log file and its topics -- events, labels, audit, predictions
(:mod:`.log`, :mod:`.predictions`); the label-outcome rule (:mod:`.outcomes`: what an event's
outcome was as of a moment, under a label policy).

Promises: appends are atomic per batch and idempotent by ``event_id`` (labels by ``(event_id,
source)``); a batch with a malformed row is rejected whole, naming the row and field; records
are never updated or deleted; reads are in log (offset) order; a label's ``known_at`` is when
it became known (its ``label_ts`` for a backfill, never before it arrived for a live one).

Never: computes features, loads models, or reads the registry.
"""
