"""The retraining loop: from alerts and new labels to a better model in production, safely.

What it owns: the loop's policy as applied (:mod:`~modelminder.loop.engine`), its audit
records and their fold (:mod:`~modelminder.loop.state`), its lease (:mod:`~modelminder.loop.
lock`), the paired champion-vs-candidate comparison (:mod:`~modelminder.loop.compare`) and the
backtest in simulated time (:mod:`~modelminder.loop.backtest`).

What it promises: a candidate becomes champion only after the guard and the gate passed it, a
paired comparison found it better (backtest, then live shadow traffic once labels arrive), and
either the policy or a human approved it; every move goes through
:mod:`modelminder.registry.changes`; a crash never moves the champion; two loops never work at
once; ``minder loop`` and ``minder backtest`` run the same step, only the clock differs.

What it never does: move an alias any other way, or write to the project a backtest reads.
"""
