"""The one way a served model changes: load it, then promote, override or roll back.

The CLI, the HTTP API and the retraining loop all call these functions, so a move means the
same thing whichever door it comes through: the model the alias will point at is loaded first
(checksums verified, every stored type on the allow-list, trained on the project's feature set),
and only then does the alias move, through :class:`~modelminder.registry.Registry`, which
records the change in the alias history and the log's audit topic. A model that ``minder
serve`` could not load never becomes champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelminder.errors import RegistryError
from modelminder.events.log import EventLog
from modelminder.model.ensemble import Ensemble
from modelminder.registry.store import ALIASES, ModelRecord, Registry


@dataclass(frozen=True)
class Loaded:
    """A registered model, checked and ready to score."""

    record: ModelRecord
    model: Ensemble

    @property
    def version(self) -> str:
        return self.record.version


def resolve(reg: Registry, ref: str) -> str:
    """The version a reference names: an alias (``champion``...) or a version itself."""
    if ref not in ALIASES:
        return ref
    version = reg.alias(ref)
    if version is None:
        raise RegistryError(
            f"No model is {ref} yet. Promote one: minder models promote VERSION --alias {ref}"
        )
    return version


def load_checked(reg: Registry, ref: str, *, fingerprint: str) -> Loaded:
    """Model ``ref`` (a version like ``v3`` or an alias), checked against the feature set
    ``fingerprint`` and loaded from its checksummed artifact. Raises :class:`RegistryError`
    or :class:`~modelminder.errors.ArtifactError` and changes nothing."""
    version = resolve(reg, ref)
    record = reg.get(version)
    trained_on = record.card.fingerprint
    if trained_on != fingerprint:
        raise RegistryError(
            f"Model {version} was trained on a different feature set (fingerprint "
            f"{trained_on[:12] or 'none'}, project has {fingerprint[:12]}). Its features "
            "cannot be computed here; retrain it on the current feature set."
        )
    return Loaded(record, Ensemble.from_files(reg.load_files(version)))


def load_model(root: Path, ref: str, *, fingerprint: str) -> Loaded:
    """:func:`load_checked` on the registry of the project at ``root``."""
    with Registry.open(root) as reg:
        return load_checked(reg, ref, fingerprint=fingerprint)


def promote(
    root: Path,
    log: EventLog | None,
    version: str,
    *,
    alias: str = "champion",
    fingerprint: str,
    actor: str,
    reason: str = "",
    override: bool = False,
) -> Loaded:
    """Point ``alias`` at ``version`` once the model has loaded and fits the feature set.

    A rejected version becomes champion only with ``override=True`` and a reason (recorded).
    Returns the loaded model, so a server can swap it in without loading it twice.
    """
    if alias not in ALIASES:
        raise RegistryError(f"Unknown alias {alias!r}. Allowed: {', '.join(ALIASES)}.")
    with Registry.open(root, log) as reg:
        loaded = load_checked(reg, version, fingerprint=fingerprint)
        reg.set_alias(alias, loaded.version, actor=actor, reason=reason, override=override)
    return loaded


def rollback(
    root: Path, log: EventLog | None, *, fingerprint: str, actor: str, reason: str = "rollback"
) -> Loaded:
    """Move champion back to the champion before it, once that model has loaded."""
    with Registry.open(root, log) as reg:
        target = reg.rollback_target()
        loaded = load_checked(reg, target, fingerprint=fingerprint)
        # `expect`: if another process moved champion since the check, nothing moves.
        reg.rollback(actor=actor, reason=reason, expect=loaded.version)
    return loaded
