"""The shipped model and the records that travel with it.

Owns: :class:`~modelminder.model.ensemble.Ensemble` (the fold models, averaged and calibrated)
and its safe file format; the monitors' :class:`~modelminder.model.reference.Reference` (the
training-time statistics live data is compared with); the model card and guard report
(:mod:`modelminder.model.card`), typed records with a versioned JSON form.

Promises: loading a model never runs code (no pickle; skops types on an exact allow-list);
every record round-trips through its JSON form unchanged.

Never: reads the event log, a database or the registry. Training builds these objects, the
registry stores them, serving and monitoring read them.
"""
