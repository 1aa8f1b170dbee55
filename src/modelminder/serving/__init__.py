"""Serving: the live path over HTTP (and in-process), decisions, the prediction log, tokens.

Owns ``<project>/serving.db`` (API tokens, hashed). :class:`~.service.Service` is the live loop
(log the event, online features, champion score, decision, prediction logged in the log's
``predictions`` topic, shadow scored off the request path); :mod:`.app` is the thin FastAPI
layer over it (auth per request in :mod:`.auth`; blocking work off the event loop); promote
and rollback go through :mod:`modelminder.registry.changes`.

Never: trains models, reaches into a model's members, or moves an alias by itself.
"""
