"""Model artifacts on disk: a folder of named files plus a checksummed ``manifest.json``.

Promises
--------
* ``write_artifact`` is atomic: the files are written and fsynced in a temporary sibling
  folder, which is then renamed into place. The target folder either does not exist or is
  complete; a failed write removes its temporary folder.
* The artifact checksum is the SHA-256 of the manifest's bytes; the manifest holds each file's
  SHA-256 and size. ``read_artifact`` verifies all of it, every time, and refuses an artifact
  with a missing, extra or changed file: such an artifact was tampered with or corrupted.
* File contents are opaque bytes. Nothing here deserializes them (and nothing here ever
  uses pickle); turning bytes into a model is the caller's job, with a safe format.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import unicodedata
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelminder.errors import ArtifactError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_MAX_NAME_BYTES = 255  # the usual file-name limit (ext4, APFS, NTFS)
_TAMPERED = (
    "The artifact was tampered with or corrupted and must not be used; restore the folder "
    "from a backup, or retrain and register a new version."
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(name: object) -> str:
    """Return ``name`` if it is a plain file name, else raise ArtifactError."""
    allowed = (
        "A file name must be a plain name like 'model.json': not empty, not '.' or '..', "
        "no '/' or '\\', no control characters, at most 255 bytes in UTF-8, and not "
        f"{MANIFEST!r} (reserved)."
    )
    if not isinstance(name, str):
        raise ArtifactError(
            f"Artifact file names must be strings. Got {type(name).__name__} {name!r}."
        )
    bad = (
        name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name)
        or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES
    )
    if bad:
        raise ArtifactError(f"Invalid artifact file name {name!r}. {allowed}")
    if name.casefold() == MANIFEST:
        raise ArtifactError(
            f"Invalid artifact file name {name!r}: {MANIFEST!r} is written by the registry. "
            "Rename the file."
        )
    return name


def _check_files(files: Mapping[str, bytes]) -> dict[str, bytes]:
    if not isinstance(files, Mapping):
        raise ArtifactError(
            "An artifact's files must be a mapping of file name -> bytes, like "
            f"{{'model.json': b'...'}}. Got {type(files).__name__}."
        )
    if not files:
        raise ArtifactError(
            "An artifact needs at least one file; got an empty mapping. Pass the model's "
            "files, like {'model.json': b'...'}."
        )
    checked: dict[str, bytes] = {}
    # Names that differ only in case would overwrite each other on a case-insensitive file
    # system (macOS, Windows), so they are refused everywhere.
    folded: dict[str, str] = {}
    for name, data in files.items():
        _check_name(name)
        if not isinstance(data, bytes | bytearray):
            raise ArtifactError(
                f"The content of artifact file {name!r} must be bytes. Got "
                f"{type(data).__name__}. Encode text first, e.g. text.encode('utf-8')."
            )
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            raise ArtifactError(
                f"Artifact file names {other!r} and {name!r} differ only in case, so they "
                "would overwrite each other on a case-insensitive file system. Rename one."
            )
        checked[name] = bytes(data)
    return checked


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def manifest_bytes(files: Mapping[str, bytes]) -> bytes:
    """The manifest that ``write_artifact`` writes for ``files`` (sorted, stable bytes).

    Examples
    --------
    >>> print(manifest_bytes({"a.txt": b"hi"}).decode())  # doctest: +NORMALIZE_WHITESPACE
    {"files": {"a.txt": {"sha256":
      "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4", "size": 2}},
     "format": 1}
    """
    body: dict[str, Any] = {
        "files": {
            name: {"sha256": _sha256(data), "size": len(data)}
            for name, data in sorted(files.items())
        },
        "format": MANIFEST_FORMAT,
    }
    return (json.dumps(body, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def write_artifact(folder: Path, files: Mapping[str, bytes]) -> str:
    """Write ``files`` and their manifest into the new folder ``folder``, atomically.

    Parameters
    ----------
    folder : Path
        Where the artifact goes. It must not exist yet (artifacts are immutable); its parent
        folder must exist.
    files : Mapping[str, bytes]
        File name -> content. Names must be plain file names (no folders).

    Returns
    -------
    str
        The artifact checksum: the SHA-256 (hex) of the manifest's bytes. Keep it; reading
        the artifact back requires it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp()) / "v1"
    >>> checksum = write_artifact(folder, {"model.json": b'{"trees": 3}'})
    >>> sorted(p.name for p in folder.iterdir())
    ['manifest.json', 'model.json']
    >>> read_artifact(folder, checksum)
    {'model.json': b'{"trees": 3}'}
    """
    folder = Path(folder)
    checked = _check_files(files)
    if not folder.parent.is_dir():
        raise ArtifactError(
            f"Cannot write the artifact {folder}: its parent folder {folder.parent} does not "
            "exist. Create it first."
        )
    if folder.exists() or folder.is_symlink():
        raise ArtifactError(
            f"Cannot write the artifact {folder}: it already exists, and artifacts are never "
            "overwritten. Choose a new folder."
        )
    manifest = manifest_bytes(checked)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        for name, data in checked.items():
            _write_synced(tmp / name, data)
        # The manifest goes last: a folder with a manifest has all its files.
        _write_synced(tmp / MANIFEST, manifest)
        _fsync_dir(tmp)
        # os.rename would silently replace an empty directory created since the check above;
        # a non-empty one makes it fail, which is what we want.
        if folder.exists() or folder.is_symlink():
            raise ArtifactError(
                f"Cannot write the artifact {folder}: it appeared while writing. "
                "Choose a new folder."
            )
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):  # not every file system can fsync a directory
        _fsync_dir(folder.parent)
    return _sha256(manifest)


def _parse_manifest(folder: Path, raw: bytes) -> dict[str, tuple[str, int]]:
    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"Artifact {folder}: {MANIFEST} {why}. {_TAMPERED}")

    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("is not valid JSON") from None
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        raise bad(f"is not a format-{MANIFEST_FORMAT} manifest")
    entries = body.get("files")
    if not isinstance(entries, dict) or not entries:
        raise bad("lists no files")
    out: dict[str, tuple[str, int]] = {}
    for name, entry in entries.items():
        try:
            _check_name(name)
        except ArtifactError:
            raise bad(f"lists an invalid file name {name!r}") from None
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("size"), int)
        ):
            raise bad(f"has a malformed entry for {name!r}")
        out[name] = (entry["sha256"], entry["size"])
    return out


def read_artifact(folder: Path, checksum: str) -> dict[str, bytes]:
    """Read the artifact in ``folder`` after verifying it against ``checksum``.

    The manifest's SHA-256 must equal ``checksum``, the folder must hold exactly the files the
    manifest lists (as regular files), and each file's size and SHA-256 must match it.

    Parameters
    ----------
    folder : Path
        The artifact folder, as written by :func:`write_artifact`.
    checksum : str
        The checksum :func:`write_artifact` returned.

    Returns
    -------
    dict[str, bytes]
        File name -> content, sorted by name; the manifest itself is not included.

    Raises
    ------
    ArtifactError
        Anything differs. The message names the folder and the file, and what was expected
        versus found. Such an artifact was tampered with or corrupted: do not use it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp()) / "v1"
    >>> checksum = write_artifact(folder, {"model.json": b"{}"})
    >>> _ = (folder / "model.json").write_bytes(b"[]")
    >>> read_artifact(folder, checksum)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.ArtifactError: Artifact ...: file 'model.json' has SHA-256 4f53cda1...
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"Artifact {folder} does not exist (or is not a folder). {_TAMPERED}")
    manifest_path = folder / MANIFEST
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise ArtifactError(f"Artifact {folder}: {MANIFEST} is missing. {_TAMPERED}")
    raw = manifest_path.read_bytes()
    found = _sha256(raw)
    if found != checksum:
        raise ArtifactError(
            f"Artifact {folder}: {MANIFEST} has SHA-256 {found}, but the registered checksum "
            f"is {checksum!r}. {_TAMPERED}"
        )
    expected = _parse_manifest(folder, raw)
    present = {entry.name for entry in os.scandir(folder)} - {MANIFEST}
    extra = sorted(present - expected.keys())
    if extra:
        raise ArtifactError(
            f"Artifact {folder}: file {extra[0]!r} is not in the manifest (expected only "
            f"{sorted(expected)} besides {MANIFEST}). {_TAMPERED}"
        )
    out: dict[str, bytes] = {}
    for name, (sha, size) in sorted(expected.items()):
        path = folder / name
        if name not in present:
            raise ArtifactError(
                f"Artifact {folder}: file {name!r} is missing (the manifest expects {size} "
                f"bytes with SHA-256 {sha}). {_TAMPERED}"
            )
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(
                f"Artifact {folder}: {name!r} is not a regular file (a link or folder), but "
                f"the manifest expects a file. {_TAMPERED}"
            )
        data = path.read_bytes()
        if len(data) != size:
            raise ArtifactError(
                f"Artifact {folder}: file {name!r} has {len(data)} bytes, but the manifest "
                f"expects {size}. {_TAMPERED}"
            )
        got = _sha256(data)
        if got != sha:
            raise ArtifactError(
                f"Artifact {folder}: file {name!r} has SHA-256 {got}, but the manifest "
                f"expects {sha}. {_TAMPERED}"
            )
        out[name] = data
    return out
