"""A model file must never run code: a skops member whose root is a call of ``builtins.exec``
(the attack found in issue 10) is refused everywhere a model loads -- the library, ``minder
score``, ``minder serve`` at start and an API promote -- and its payload never runs."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelminder.errors import ArtifactError
from modelminder.model.card import ModelCard
from modelminder.model.ensemble import Ensemble, SklearnMember
from modelminder.project import Project, init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.app import create_app
from modelminder.serving.service import Service

MINDER = [sys.executable, "-c", "from modelminder.cli import main; main()"]


def _exec_payload(marker: Path) -> bytes:
    """A skops file whose root node constructs ``builtins.exec(code)``."""
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    schema = {
        "__class__": "exec",
        "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [
                {
                    "__class__": "str",
                    "__module__": "builtins",
                    "__loader__": "JsonNode",
                    "content": json.dumps(code),
                    "is_json": True,
                    "__id__": 2,
                }
            ],
            "__id__": 1,
        },
        "__id__": 0,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    return buf.getvalue()


def _hostile_files(marker: Path, names: list[str]) -> dict[str, bytes]:
    X = np.random.default_rng(0).random((40, len(names)))
    honest = Ensemble(
        names, [SklearnMember(LogisticRegression().fit(X, X[:, 0] > 0.5))], "sklearn", {}
    )
    files = honest.to_files()
    files["member_0.skops"] = _exec_payload(marker)
    return files


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Project, Path]:
    """A project whose registry holds v1: a one-member sklearn model that is the payload
    (checksummed at registration, as an attacker with write access to a training job would)."""
    root = tmp_path / "proj"
    init_project(root, builtin=True)
    project = load_project(root)
    plan = project.plan()
    marker = tmp_path / "pwned.txt"
    with project.open_log() as log, Registry.open(root, log) as reg:
        reg.register(
            _hostile_files(marker, plan.names),
            dataclasses.replace(
                ModelCard.example(plan.names), fingerprint=plan.feature_set.fingerprint()
            ).to_json(),
            status="accepted",
            created_by="attacker",
        )
    return project, marker


def test_the_library_refuses_the_payload_and_it_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    with pytest.raises(ArtifactError, match=r"not trusted: builtins\.exec") as err:
        Ensemble.from_files(_hostile_files(marker, ["a", "b"]))
    assert "no code in it ran" in str(err.value)
    assert not marker.exists()


def test_minder_score_refuses_it_with_a_message_not_a_traceback(
    hostile: tuple[Project, Path], tmp_path: Path
) -> None:
    project, marker = hostile
    done = subprocess.run(
        [*MINDER, "score", "--model", "v1", "--out", str(tmp_path / "s.parquet"),
         "-p", str(project.root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "builtins.exec" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


def test_minder_serve_refuses_to_start_with_it_as_champion(
    hostile: tuple[Project, Path],
) -> None:
    project, marker = hostile
    with project.open_log() as log, Registry.open(project.root, log) as reg:
        reg.set_alias("champion", "v1", actor="attacker", reason="test")
    done = subprocess.run(
        [*MINDER, "serve", "--port", "0", "-p", str(project.root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "builtins.exec" in done.stderr
    # Refused cleanly: no traceback, no connection left open at exit.
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize("alias", ["champion", "shadow"])
def test_an_api_promote_is_refused_with_409_and_the_alias_stays(
    hostile: tuple[Project, Path], alias: str
) -> None:
    project, marker = hostile
    service = Service(project)
    try:
        with TestClient(create_app(service, open_access=True)) as client:
            r = client.post(f"/v1/models/v1/promote?alias={alias}")
        assert r.status_code == 409, r.text
        assert r.json()["error"]["type"] == "ArtifactError"
        assert "builtins.exec" in r.json()["error"]["message"]
    finally:
        service.close()
    with Registry.open(project.root) as reg:
        assert reg.aliases() == {}
    assert not marker.exists()


@pytest.mark.parametrize(
    "estimator",
    [
        LogisticRegression(),
        RandomForestClassifier(n_estimators=3, random_state=0),
        HistGradientBoostingClassifier(max_iter=5),
        KNeighborsClassifier(),
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0),
        make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()),
    ],
    ids=lambda e: type(e).__name__,
)
def test_common_scikit_learn_classifiers_still_round_trip(estimator: object) -> None:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(1)
    X = rng.random((120, 3))
    y = (X[:, 0] + 0.2 * rng.random(120) > 0.6).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = estimator.fit(X, y)  # type: ignore[attr-defined]
    model = Ensemble(["a", "b", "c"], [SklearnMember(fitted)], "sklearn", {})
    again = Ensemble.from_files(model.to_files())
    assert np.array_equal(again.predict(X), model.predict(X))


def test_a_malformed_model_description_is_an_artifact_error() -> None:
    model = Ensemble(["a"], [SklearnMember(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))],
                     "sklearn", {})  # fmt: skip
    files = model.to_files()
    for broken in (b"{}", b"[1]", b'{"members": [{"kind": "sklearn"}]}', b"not json"):
        with pytest.raises(ArtifactError, match="malformed"):
            Ensemble.from_files(files | {"model.json": broken})
