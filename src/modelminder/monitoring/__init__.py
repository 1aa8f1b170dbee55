"""Monitoring: watch the deployed model the way a careful human minder would.

What it owns: drift statistics against the model's reference (stored at training time, never a
re-scan of raw training data), data quality, performance on late labels, label-free estimates,
concept-drift detectors on the error stream, the skew monitor, and alerts.

What it promises: every signal is computed per time window and per model version from the log
(predictions, labels, events), so a monitor run can be replayed; thresholds are calibrated so a
stable stream raises few false alarms at any sample size.

What it never does: re-predict (it reads what was served), or write anywhere but the log's
alerts.
"""
