"""RowInsert stores exactly what the typed path would: text (any code point, NUL included),
64-bit ints, bools as 0/1 and floats exactly (floats never pass through text)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.store.sqlite import Database, RowInsert

COLUMNS = {"k": "str", "n": "int", "b": "bool", "v": "float", "w": "float"}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    d = Database(Path(tmp_path_factory.mktemp("ri")) / "x.db", pragmas=())
    d.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, b INTEGER, v REAL, w REAL)")
    yield d
    d.close()


@settings(max_examples=300, deadline=None)
@given(
    k=st.text(min_size=1, max_size=20),
    n=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    b=st.booleans(),
    v=st.floats(allow_nan=False, allow_infinity=False),
    w=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_round_trip(db: Database, k: str, n: int, b: bool, v: float, w: float) -> None:
    ins = RowInsert("t", COLUMNS, "ON CONFLICT(k) DO NOTHING")
    db.execute("DELETE FROM t")
    assert ins.run(db, {"k": k, "n": n, "b": b, "v": v, "w": w}) == 1
    assert ins.run(db, {"k": k, "n": 0, "b": False, "v": 0.0, "w": 0.0}) == 0  # conflict
    [(k2, n2, b2, v2, w2)] = db.fetch("SELECT k, n, b, v, w FROM t")
    assert (k2, n2, b2) == (k, n, int(b))
    # Exact (SQLite keeps no sign on a zero, whichever way it is bound).
    assert v2 == v and w2 == w
