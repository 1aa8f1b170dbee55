"""Model versions, their artifacts, and the aliases (champion, challenger, shadow) that serve.

:class:`Registry` is the one place where registry state changes: versions are registered once
and never updated, aliases move only through it, and every alias change is recorded in the
registry's history and in the event log's audit topic. Artifacts are folders of files plus a
checksummed manifest, verified on every load (:func:`write_artifact`, :func:`read_artifact`).
"""

from __future__ import annotations

from modelminder.registry.artifacts import manifest_bytes, read_artifact, write_artifact
from modelminder.registry.store import (
    ALIASES,
    STATUSES,
    AliasChange,
    ModelRecord,
    Registry,
)

__all__ = [
    "ALIASES",
    "STATUSES",
    "AliasChange",
    "ModelRecord",
    "Registry",
    "manifest_bytes",
    "read_artifact",
    "write_artifact",
]
