from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import ArtifactError
from modelminder.registry import artifacts
from modelminder.registry.artifacts import MANIFEST, read_artifact, write_artifact

FILES = {"model.json": b'{"members": 2}', "member_0.txt": b"tree 0\n", "empty.bin": b""}
TAMPERED = "tampered with or corrupted and must not be used"


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "v1"
    return folder, write_artifact(folder, FILES)


def test_round_trip_returns_exactly_the_files(written: tuple[Path, str]) -> None:
    folder, checksum = written
    assert read_artifact(folder, checksum) == FILES
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, MANIFEST])


def test_checksum_is_the_manifest_sha256_and_the_manifest_lists_every_file(
    written: tuple[Path, str],
) -> None:
    folder, checksum = written
    raw = (folder / MANIFEST).read_bytes()
    assert checksum == hashlib.sha256(raw).hexdigest()
    listed = json.loads(raw)["files"]
    assert listed == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in FILES.items()
    }


def test_same_files_give_the_same_checksum(tmp_path: Path) -> None:
    reordered = dict(reversed(list(FILES.items())))
    assert write_artifact(tmp_path / "a", FILES) == write_artifact(tmp_path / "b", reordered)


def test_a_file_changed_by_one_byte_is_refused(written: tuple[Path, str]) -> None:
    folder, checksum = written
    path = folder / "member_0.txt"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        read_artifact(folder, checksum)
    msg = str(err.value)
    assert str(folder) in msg and "'member_0.txt'" in msg and TAMPERED in msg
    expected = hashlib.sha256(FILES["member_0.txt"]).hexdigest()
    assert f"expects {expected}" in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg


def test_a_file_of_another_size_is_refused(written: tuple[Path, str]) -> None:
    folder, checksum = written
    (folder / "model.json").write_bytes(FILES["model.json"] + b" ")
    with pytest.raises(
        ArtifactError, match=r"'model.json' has 15 bytes, but the manifest expects 14"
    ):
        read_artifact(folder, checksum)


def test_a_missing_file_is_refused(written: tuple[Path, str]) -> None:
    folder, checksum = written
    (folder / "empty.bin").unlink()
    with pytest.raises(ArtifactError, match=r"'empty.bin' is missing") as err:
        read_artifact(folder, checksum)
    assert TAMPERED in str(err.value)


def test_an_extra_file_is_refused(written: tuple[Path, str]) -> None:
    folder, checksum = written
    (folder / "backdoor.py").write_bytes(b"import os")
    with pytest.raises(ArtifactError, match=r"'backdoor.py' is not in the manifest") as err:
        read_artifact(folder, checksum)
    assert TAMPERED in str(err.value)


def test_a_wrong_checksum_is_refused(written: tuple[Path, str]) -> None:
    folder, checksum = written
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ArtifactError, match=rf"registered checksum is '{wrong}'") as err:
        read_artifact(folder, wrong)
    assert checksum in str(err.value)  # what was found
    assert TAMPERED in str(err.value)


def test_an_edited_manifest_is_refused(written: tuple[Path, str]) -> None:
    # Rewriting a file *and* its manifest entry still changes the checksum.
    folder, checksum = written
    (folder / "model.json").write_bytes(b"{}")
    body = json.loads((folder / MANIFEST).read_bytes())
    body["files"]["model.json"] = {"sha256": hashlib.sha256(b"{}").hexdigest(), "size": 2}
    (folder / MANIFEST).write_text(json.dumps(body, sort_keys=True))
    with pytest.raises(ArtifactError, match=f"{MANIFEST} has SHA-256"):
        read_artifact(folder, checksum)


def test_a_missing_manifest_or_folder_is_refused(written: tuple[Path, str], tmp_path: Path) -> None:
    folder, checksum = written
    with pytest.raises(ArtifactError, match="does not exist"):
        read_artifact(tmp_path / "nope", checksum)
    (folder / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match=f"{MANIFEST} is missing"):
        read_artifact(folder, checksum)


def test_a_file_replaced_by_a_link_is_refused(written: tuple[Path, str], tmp_path: Path) -> None:
    folder, checksum = written
    outside = tmp_path / "outside.txt"
    outside.write_bytes(FILES["member_0.txt"])  # same content, but not part of the artifact
    (folder / "member_0.txt").unlink()
    (folder / "member_0.txt").symlink_to(outside)
    with pytest.raises(ArtifactError, match="not a regular file"):
        read_artifact(folder, checksum)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "../escape", "/abs", "a\\b", "nul\x00", "new\nline", "x" * 256],
)
def test_names_that_are_not_plain_file_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match="Invalid artifact file name") as err:
        write_artifact(tmp_path / "v1", {"ok.txt": b"1", name: b"2"})
    assert repr(name) in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [MANIFEST, "Manifest.JSON"])
def test_the_manifest_name_is_reserved(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match="written by the registry"):
        write_artifact(tmp_path / "v1", {name: b"{}"})


def test_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="differ only in case"):
        write_artifact(tmp_path / "v1", {"Model.txt": b"1", "model.txt": b"2"})


def test_bad_contents_and_empty_artifacts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"must be bytes. Got str. Encode text first"):
        write_artifact(tmp_path / "v1", {"model.json": "{}"})  # type: ignore[dict-item]
    with pytest.raises(ArtifactError, match="at least one file"):
        write_artifact(tmp_path / "v1", {})
    with pytest.raises(ArtifactError, match="must be strings"):
        write_artifact(tmp_path / "v1", {1: b""})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(written: tuple[Path, str]) -> None:
    folder, checksum = written
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifact(folder, {"model.json": b"other"})
    assert read_artifact(folder, checksum) == FILES


def test_a_missing_parent_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"parent folder .*missing does not exist"):
        write_artifact(tmp_path / "missing" / "v1", FILES)


def test_a_failed_write_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = artifacts._write_synced
    calls: list[Path] = []

    def fail_on_second(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(artifacts, "_write_synced", fail_on_second)
    with pytest.raises(OSError, match="No space left"):
        write_artifact(tmp_path / "v1", FILES)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary folder


_NAME_CHARS = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/\\")
_NAMES = st.text(_NAME_CHARS, min_size=1, max_size=30).filter(
    lambda n: n not in (".", "..") and n.casefold() != MANIFEST
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_NAMES, min_size=1, max_size=5, unique_by=str.casefold).flatmap(
        lambda names: st.tuples(
            st.just(names),
            st.lists(st.binary(max_size=300), min_size=len(names), max_size=len(names)),
        )
    )
)
def test_any_valid_names_and_bytes_round_trip(case: tuple[list[str], list[bytes]]) -> None:
    names, contents = case
    files = dict(zip(names, contents, strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "artifact"
        checksum = write_artifact(folder, files)
        assert read_artifact(folder, checksum) == files
