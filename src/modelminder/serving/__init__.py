"""Serving: the live path over HTTP (and in-process), decisions, the prediction log, tokens.

Owns ``<project>/serving.db`` (predictions, tokens). :class:`~.service.Service` is the live
loop (log, online features, champion score, decision, record, shadow); :mod:`.app` is the thin
FastAPI layer over it.
"""
