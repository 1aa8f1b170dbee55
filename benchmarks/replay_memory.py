"""Peak memory of ``minder replay`` over the 5M-event log, vs the hand-written Polars query.

Each side runs in its own process; its peak resident set size is read from the kernel when
it exits (``os.wait4``). The engine side is the real command, ``minder replay --out F``,
reading the log built by ``ingest_throughput.py`` (built here if missing). The baseline reads
the same events from Parquet and runs the query of ``replay_throughput.py``.

Target (issue 2): engine peak under 4 GB on 5M events.

    .venv/bin/python benchmarks/replay_memory.py [--events 5000000]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _common import DATA, machine, parse, world
from ingest_throughput import ingest_engine, project_for

HERE = Path(__file__).resolve().parent


def peak(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB


def main() -> None:
    args = parse(__doc__.splitlines()[0], 5_000_000)
    ev_path, _ = world(args.events)
    root = project_for(ev_path)
    if not (root / "minder.toml").exists():
        print(f"building the log in {root} ...")
        ingest_engine(ev_path, root)
    minder = str(Path(sys.executable).with_name("minder"))
    print(f"log {root}; {machine()}")
    out = DATA / "replay-memory.parquet"
    t_e, gb_e = peak([minder, "replay", "--out", str(out), "--project", str(root)])
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r});"
        "import polars as pl; from replay_throughput import polars_features;"
        f"polars_features(pl.read_parquet({str(ev_path)!r}))"
    )
    t_b, gb_b = peak([sys.executable, "-c", code])
    print(f"engine (minder replay)  {t_e:6.1f} s  peak {gb_e:5.2f} GB")
    print(f"polars query            {t_b:6.1f} s  peak {gb_b:5.2f} GB")
    print(f"RATIO engine/polars peak memory = {gb_e / gb_b:.2f}")
    print(f"engine peak = {gb_e:.2f} GB  (target < 4 GB)")


if __name__ == "__main__":
    main()
