"""Guarded training: point-in-time training sets, time-aware validation, search, the gate.

Owns: building training sets from the log (:mod:`.dataset`), fold plans (:mod:`.splits`),
estimators and their safe serialization (:mod:`.estimators`, :mod:`.ensemble`), the search
(:mod:`.search`), the overfitting/leakage report (:mod:`.report`), the gate (:mod:`.gate`) and
the orchestration (:mod:`.train`).

Promises: a training set only holds what was known at its cut-off; validation never trains on
rows whose label became known after the validation period starts; a model's scores on the
out-of-time holdout come from models that never saw it. Never writes to the log or the
registry itself: callers register what :func:`.train.train_model` returns.
"""
