"""The model registry: immutable model versions, their artifacts, and the aliases that serve.

Owns
----
``<root>/models/registry.db`` (tables ``models`` and ``alias_history``) and the artifact folders
``<root>/models/<version>/``. Every registry state change goes through this module.

Promises
--------
* Versions are ``v1, v2, ...`` in registration order, assigned here, and immutable: there is no
  update API, and the tables themselves refuse UPDATE and DELETE.
* A version's artifact is written (atomically) before its row, in the same write transaction;
  if the row cannot be written the artifact folder is removed. ``load_files`` verifies the
  artifact's checksum on every load.
* Aliases (``champion``, ``challenger``, ``shadow``) change only through ``set_alias``,
  ``clear_alias`` and ``rollback``. Each change appends a row to ``alias_history`` (the
  authoritative record) and, when the registry has an event log, an ``alias_changed`` record
  to the log's audit topic, written right after the registry commits.
* A rejected version becomes champion only with ``override=True`` and a reason; the override is
  recorded in the history row and in the audit record.

Never: updates or deletes a version, unpickles anything, or uses the stdlib ``sqlite3`` module
(one SQLite library per process: ADBC, as the event log does).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelminder.clock import Clock, WallClock
from modelminder.errors import RegistryError
from modelminder.events.log import EventLog
from modelminder.model.card import ModelCard
from modelminder.registry.artifacts import read_artifact, write_artifact
from modelminder.store.migrations import migrate
from modelminder.store.migrations.registry import MIGRATIONS
from modelminder.store.sqlite import Database

ALIASES = ("champion", "challenger", "shadow")
STATUSES = ("accepted", "rejected")
DB_NAME = "registry.db"
_COLUMNS = "version, created_at, status, reasons, checksum, meta, created_by"


@dataclass(frozen=True)
class ModelRecord:
    """One registered model version (immutable).

    ``created_at`` is in UTC microseconds; ``checksum`` is the artifact checksum
    (see :func:`~modelminder.registry.artifacts.write_artifact`).
    """

    version: str
    created_at: int
    status: str
    reasons: tuple[str, ...]
    checksum: str
    meta: dict[str, Any] = field(hash=False)
    created_by: str

    @functools.cached_property
    def card(self) -> ModelCard:
        """The model card registered with this version (parsed from :attr:`meta` once).
        Raises ArtifactError if the meta is not a card this modelminder can read."""
        return ModelCard.from_json(self.meta)

    def to_json(self) -> str:
        """The record as a JSON object (keys sorted).

        Examples
        --------
        >>> ModelRecord("v1", 5, "accepted", (), "ab", {"auc": 0.9}, "alice").to_json()
        '{"checksum": "ab", "created_at": 5, "created_by": "alice", "meta": {"auc": 0.9}, \
"reasons": [], "status": "accepted", "version": "v1"}'
        """
        return json.dumps(
            {
                "version": self.version,
                "created_at": self.created_at,
                "status": self.status,
                "reasons": list(self.reasons),
                "checksum": self.checksum,
                "meta": self.meta,
                "created_by": self.created_by,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class AliasChange:
    """One row of the alias history: ``alias`` moved from ``previous`` to ``version``.

    ``version`` is None when the alias was cleared; ``action`` is ``set``, ``clear`` or
    ``rollback``; ``override`` is True when a rejected version was made champion.
    """

    ts: int
    alias: str
    version: str | None
    previous: str | None
    action: str
    actor: str
    reason: str
    override: bool


def _check_alias(alias: object) -> str:
    if not isinstance(alias, str) or alias not in ALIASES:
        raise RegistryError(f"Unknown alias {alias!r}. Aliases: {', '.join(ALIASES)}.")
    return alias


def _check_text(what: str, value: object, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        kind = "a string" if empty_ok else "a non-empty string"
        raise RegistryError(f"The {what} must be {kind}. Got {value!r}.")
    return value


def _to_json(what: str, value: object) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise RegistryError(
            f"The {what} must be JSON-serializable: {err}. Convert values to str, int, "
            "finite float, bool, None, lists or dicts (e.g. numpy values with .tolist(), "
            "NaN with None)."
        ) from None


class Registry:
    """The model registry of a project folder.

    Open it with :meth:`open`; close it (or use it as a context manager). The event log, if
    given, stays the caller's to close.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with Registry.open(Path(tempfile.mkdtemp())) as reg:
    ...     first = reg.register({"model.json": b"{}"}, {"auc": 0.91}, status="accepted",
    ...                          created_by="alice")
    ...     reg.set_alias("champion", first.version, actor="alice", reason="first model")
    ...     print(first.version, reg.aliases(), reg.load_files("v1"))
    v1 {'champion': 'v1'} {'model.json': b'{}'}
    """

    def __init__(self, root: Path, log: EventLog | None, clock: Clock) -> None:
        self.root = root
        self.folder = root / "models"
        self.path = self.folder / DB_NAME
        self.log = log
        self.clock = clock
        # Registry writes are rare and must survive a power cut: synchronous=FULL.
        self._db = Database(
            self.path,
            pragmas=(
                "journal_mode=WAL",
                "synchronous=FULL",
                "busy_timeout=10000",
                "foreign_keys=ON",
            ),
        )
        self._lock = self._db.lock
        self._tx = self._db.tx

    @classmethod
    def open(
        cls, root: Path, log: EventLog | None = None, *, clock: Clock | None = None
    ) -> Registry:
        """Open (creating if needed) the registry of the project folder ``root``.

        Parameters
        ----------
        root : Path
            The project folder; the registry lives in ``root / "models"``.
        log : EventLog, optional
            Where alias changes and registrations are also recorded (audit topic).
        clock : Clock, optional
            Stamps versions and alias changes; defaults to the log's clock, else the wall clock.
        """
        root = Path(root)
        if not root.is_dir():
            raise RegistryError(
                f"Cannot open the model registry: project folder {root} does not exist. "
                "Create the project first (minder init), or pass the right folder."
            )
        (root / "models").mkdir(exist_ok=True)
        if clock is None:
            clock = log.clock if log is not None else WallClock()
        reg = cls(root, log, clock)
        try:
            reg._migrate()
        except BaseException:
            reg.close()
            raise
        return reg

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- database plumbing --------------------------------------------------------------------
    def _fetch(self, sql: str, params: Sequence[Any] | None = None) -> builtins.list[Any]:
        if self._db.closed:
            raise RegistryError(f"The registry at {self.path} is closed. Open it again.")
        return self._db.fetch(sql, params)

    def _migrate(self) -> None:
        # The registry's tables are created and upgraded in one place: store.migrations.registry.
        migrate(self._db, MIGRATIONS, what="the model registry")

    # -- versions -----------------------------------------------------------------------------
    def artifact_folder(self, version: str) -> Path:
        """The folder holding the artifact of ``version``."""
        return self.folder / version

    def register(
        self,
        files: Mapping[str, bytes],
        meta: Mapping[str, Any],
        *,
        status: str,
        reasons: Sequence[str] = (),
        created_by: str,
    ) -> ModelRecord:
        """Register a new model version and return its record.

        Parameters
        ----------
        files : Mapping[str, bytes]
            The model artifact: file name -> content (plain file names).
        meta : Mapping[str, Any]
            Anything JSON-serializable: feature set fingerprint, training range, metrics,
            guard report, reference statistics.
        status : {"accepted", "rejected"}
            The gate's verdict. A rejected version is kept (for the record and for shadow
            runs) but cannot become champion without an override.
        reasons : Sequence[str]
            Why (typically the gate's reasons for a rejection).
        created_by : str
            Who or what registered it (a user or a job name).

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> with Registry.open(Path(tempfile.mkdtemp())) as reg:
        ...     rec = reg.register({"model.json": b"{}"}, {}, status="rejected",
        ...                        reasons=["auc 0.61 < 0.80"], created_by="retrain-job")
        >>> rec.version, rec.status, rec.reasons
        ('v1', 'rejected', ('auc 0.61 < 0.80',))
        """
        if status not in STATUSES:
            raise RegistryError(
                f"The status of a new model must be one of {', '.join(map(repr, STATUSES))}. "
                f"Got {status!r}."
            )
        if isinstance(reasons, str) or not isinstance(reasons, Sequence):
            raise RegistryError(
                f"The reasons must be a list of strings, like ['auc 0.61 < 0.80']. Got {reasons!r}."
            )
        reason_list = [_check_text("reason", r, empty_ok=True) for r in reasons]
        _check_text("'created_by'", created_by)
        if not isinstance(meta, Mapping):
            raise RegistryError(f"The model meta must be a mapping (a dict). Got {meta!r}.")
        meta_json = _to_json("model meta", dict(meta))
        created_at = self.clock.now_us()
        with self._lock:
            folder: Path | None = None
            self._fetch("BEGIN IMMEDIATE")
            try:
                seq = int(self._fetch("SELECT COALESCE(MAX(seq), 0) + 1 FROM models")[0][0])
                version = f"v{seq}"
                target = self.artifact_folder(version)
                if target.exists():
                    # No row has this version (we hold the write lock), so the folder was left
                    # by a registration that crashed between its rename and its commit. Keep it
                    # aside for inspection rather than delete it.
                    target.rename(self.folder / f".orphan-{version}-{uuid.uuid4().hex[:8]}")
                checksum = write_artifact(target, files)
                folder = target
                self._fetch(
                    f"INSERT INTO models (seq, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        seq,
                        version,
                        created_at,
                        status,
                        json.dumps(reason_list),
                        checksum,
                        meta_json,
                        created_by,
                    ],
                )
                self._fetch("COMMIT")
            except BaseException:
                # A failed COMMIT may already have ended the transaction; the original error
                # is the one to report.
                with contextlib.suppress(Exception):
                    self._fetch("ROLLBACK")
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            record = self._get(version)
            if self.log is not None:
                self.log.append_audit(
                    "model_registered",
                    created_by,
                    {
                        "version": version,
                        "status": status,
                        "reasons": reason_list,
                        "checksum": checksum,
                    },
                    ts_us=created_at,
                )
        return record

    def _row_to_record(self, row: Sequence[Any]) -> ModelRecord:
        version, created_at, status, reasons, checksum, meta, created_by = row
        return ModelRecord(
            version=version,
            created_at=int(created_at),
            status=status,
            reasons=tuple(json.loads(reasons)),
            checksum=checksum,
            meta=json.loads(meta),
            created_by=created_by,
        )

    def _get(self, version: object) -> ModelRecord:
        rows = (
            self._fetch(f"SELECT {_COLUMNS} FROM models WHERE version = ?", [version])
            if isinstance(version, str)
            else []
        )
        if rows:
            return self._row_to_record(rows[0])
        known = [r[0] for r in self._fetch("SELECT version FROM models ORDER BY seq")]
        if not known:
            raise RegistryError(
                f"Unknown model version {version!r}: the registry at {self.folder} has no "
                "versions yet. Register a model first."
            )
        shown = ", ".join(known if len(known) <= 20 else [*known[:3], "...", *known[-16:]])
        raise RegistryError(
            f"Unknown model version {version!r}. Known versions: {shown}. Versions are "
            "written like 'v3'."
        )

    def get(self, version: str) -> ModelRecord:
        """The record of ``version``; RegistryError naming the known versions if unknown."""
        return self._get(version)

    def list(self) -> builtins.list[ModelRecord]:
        """Every version, oldest first."""
        rows = self._fetch(f"SELECT {_COLUMNS} FROM models ORDER BY seq")
        return [self._row_to_record(r) for r in rows]

    def load_files(self, version: str) -> dict[str, bytes]:
        """The artifact files of ``version``, verified against its checksum (every time).

        Raises ArtifactError if the files on disk no longer match: do not use that model.
        """
        record = self._get(version)
        return read_artifact(self.artifact_folder(record.version), record.checksum)

    # -- aliases ------------------------------------------------------------------------------
    def _current(self, alias: str) -> str | None:
        rows = self._fetch(
            "SELECT version FROM alias_history WHERE alias = ? ORDER BY id DESC LIMIT 1", [alias]
        )
        return rows[0][0] if rows else None

    def alias(self, name: str) -> str | None:
        """The version ``name`` points to, or None if it is not set."""
        return self._current(_check_alias(name))

    def data_version(self) -> int:
        """A number that changes when another connection commits to the registry (another
        process registered a version or moved an alias); this connection's own commits leave
        it as it is. Compare readings of one open registry only. SQLite's ``PRAGMA
        data_version``: one cheap read (tens of microseconds), no lock taken, so a server can
        ask before every request whether anything changed.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> root = Path(tempfile.mkdtemp())
        >>> with Registry.open(root) as served, Registry.open(root) as other:
        ...     seen = served.data_version()
        ...     v1 = other.register({"model.json": b"{}"}, {}, status="accepted", created_by="a")
        ...     served.data_version() != seen
        True
        """
        return int(self._fetch("PRAGMA data_version")[0][0])

    def aliases(self) -> dict[str, str]:
        """Every alias that is set -> its version."""
        rows = self._fetch(
            "SELECT h.alias, h.version FROM alias_history h "
            "JOIN (SELECT alias, MAX(id) AS id FROM alias_history GROUP BY alias) last "
            "ON h.id = last.id WHERE h.version IS NOT NULL"
        )
        current = dict(rows)
        return {a: current[a] for a in ALIASES if a in current}

    def history(self, alias: str | None = None) -> builtins.list[AliasChange]:
        """Alias changes, oldest first (of one alias, or of all)."""
        sql = (
            "SELECT ts, alias, version, previous, action, actor, reason, override "
            "FROM alias_history"
        )
        params: builtins.list[Any] = []
        if alias is not None:
            sql += " WHERE alias = ?"
            params.append(_check_alias(alias))
        rows = self._fetch(sql + " ORDER BY id", params)
        return [
            AliasChange(
                ts=int(ts),
                alias=name,
                version=version,
                previous=previous,
                action=action,
                actor=actor,
                reason=reason,
                override=bool(override),
            )
            for ts, name, version, previous, action, actor, reason, override in rows
        ]

    def _change(
        self,
        alias: str,
        version: str | None,
        previous: str | None,
        *,
        action: str,
        actor: str,
        reason: str,
        override: bool,
    ) -> AliasChange:
        # Called inside a write transaction; the audit record follows the commit.
        change = AliasChange(
            self.clock.now_us(), alias, version, previous, action, actor, reason, override
        )
        self._fetch(
            "INSERT INTO alias_history "
            "(ts, alias, version, previous, action, actor, reason, override) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [change.ts, alias, version, previous, action, actor, reason, int(override)],
        )
        return change

    def _audit(self, change: AliasChange) -> None:
        if self.log is not None:
            self.log.append_audit(
                "alias_changed",
                change.actor,
                {
                    "alias": change.alias,
                    "version": change.version,
                    "previous": change.previous,
                    "action": change.action,
                    "reason": change.reason,
                    "override": change.override,
                },
                ts_us=change.ts,
            )

    def set_alias(
        self,
        alias: str,
        version: str,
        *,
        actor: str,
        reason: str = "",
        override: bool = False,
    ) -> None:
        """Point ``alias`` at ``version`` (a no-op if it already points there).

        A rejected version becomes ``champion`` only with ``override=True`` and a non-empty
        ``reason``; the override is recorded in the alias history and the audit record.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> reg = Registry.open(Path(tempfile.mkdtemp()))
        >>> bad = reg.register({"m": b"0"}, {}, status="rejected", created_by="job")
        >>> reg.set_alias("champion", bad.version, actor="bob")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        modelminder.errors.RegistryError: Version 'v1' was rejected ...
        >>> reg.set_alias("champion", "v1", actor="bob", reason="incident 42", override=True)
        >>> reg.history("champion")[-1].override
        True
        >>> reg.close()
        """
        _check_alias(alias)
        _check_text("actor", actor)
        _check_text("reason", reason, empty_ok=True)
        if not isinstance(override, bool):
            raise RegistryError(f"'override' must be True or False. Got {override!r}.")
        with self._lock:
            with self._tx():
                record = self._get(version)
                needs_override = alias == "champion" and record.status == "rejected"
                if needs_override and not override:
                    why = "; ".join(record.reasons) or "no reason recorded"
                    raise RegistryError(
                        f"Version {version!r} was rejected ({why}), so it cannot become "
                        "champion. Promote an accepted version, or pass override=True with a "
                        "reason; the override is recorded in the alias history and audit log."
                    )
                if needs_override and not reason.strip():
                    raise RegistryError(
                        f"Making rejected version {version!r} champion is an override and "
                        "needs a reason, e.g. reason='incident 42: previous champion broken'."
                    )
                previous = self._current(alias)
                if previous == version:
                    return
                change = self._change(
                    alias,
                    version,
                    previous,
                    action="set",
                    actor=actor,
                    reason=reason,
                    override=needs_override,
                )
            self._audit(change)

    def clear_alias(self, alias: str, *, actor: str, reason: str) -> None:
        """Unset ``alias`` (a no-op if it is not set)."""
        _check_alias(alias)
        _check_text("actor", actor)
        _check_text("reason", reason, empty_ok=True)
        with self._lock:
            with self._tx():
                previous = self._current(alias)
                if previous is None:
                    return
                change = self._change(
                    alias,
                    None,
                    previous,
                    action="clear",
                    actor=actor,
                    reason=reason,
                    override=False,
                )
            self._audit(change)

    def _rollback_target(self, current: str) -> str | None:
        # Champion history as a stack: a set or clear pushes; a rollback popped everything above
        # its target. So repeated rollbacks walk further back (v3 -> v2 -> v1) instead of
        # toggling between the last two versions.
        stack: builtins.list[str | None] = []
        for version, action in self._fetch(
            "SELECT version, action FROM alias_history WHERE alias = 'champion' ORDER BY id"
        ):
            if action == "rollback":
                while stack and stack[-1] != version:
                    stack.pop()
                if not stack:
                    stack.append(version)
            else:
                stack.append(version)
        for version in reversed(stack):
            if version is not None and version != current:
                return version
        return None

    def rollback_target(self) -> str:
        """The version :meth:`rollback` would make champion now (raises if there is none)."""
        with self._lock:
            return self._checked_rollback_target()

    def _checked_rollback_target(self) -> str:
        current = self._current("champion")
        if current is None:
            raise RegistryError(
                "There is no champion to roll back. Set one with "
                "set_alias('champion', version, actor=...)."
            )
        target = self._rollback_target(current)
        if target is None:
            raise RegistryError(
                f"Cannot roll back: champion {current!r} has no previous champion to "
                "go back to. Choose a version explicitly with "
                "set_alias('champion', version, actor=...)."
            )
        if self._get(target).status == "rejected":
            raise RegistryError(
                f"Cannot roll back to {target!r}: it was rejected and was champion "
                "only by override. To use it again, override explicitly: "
                f"set_alias('champion', {target!r}, actor=..., reason=..., "
                "override=True)."
            )
        return target

    def rollback(self, *, actor: str, reason: str = "rollback", expect: str | None = None) -> str:
        """Move ``champion`` back to the version it had before the current one.

        Repeated rollbacks keep walking back. Returns the new champion version.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> with Registry.open(Path(tempfile.mkdtemp())) as reg:
        ...     for _ in range(3):
        ...         v = reg.register({"m": b"0"}, {}, status="accepted", created_by="job")
        ...         reg.set_alias("champion", v.version, actor="job")
        ...     print(reg.rollback(actor="alice"), reg.rollback(actor="alice"))
        v2 v1
        """
        _check_text("actor", actor)
        _check_text("reason", reason, empty_ok=True)
        with self._lock:
            with self._tx():
                current = self._current("champion")
                target = self._checked_rollback_target()
                if expect is not None and target != expect:
                    raise RegistryError(
                        f"Champion changed while the rollback was checked: it would now go to "
                        f"{target!r}, not {expect!r}. Nothing moved; check `minder models "
                        "history` and roll back again."
                    )
                change = self._change(
                    "champion",
                    target,
                    current,
                    action="rollback",
                    actor=actor,
                    reason=reason,
                    override=False,
                )
            self._audit(change)
        return target
