"""Review: the human minders' queue -- sampling served predictions, leases, labels back.

Owns: the sampling policies (:mod:`.policies`: which served events a human should look at, and
the exact probability each was selected with); the queue (:mod:`.queue`: the log's append-only
``review_items`` and ``review_events`` tables; an item's state is the fold of its events);
the estimates that correct review-based metrics for how items were selected
(:mod:`.estimate`).

Promises: every item records its reasons and its selection probability (1.0 for
must-review); a claim is a lease, and two reviewers never hold the same item at once; a
review verdict is a label event in the log (``source = "review"``), so monitoring, label-aware
features and retraining see it like any other label; nothing is overwritten.

Never: scores events, trains, or moves a model alias. Serving calls :meth:`ReviewQueue.consider`
with what it served; the CLI and the HTTP routes call the rest.
"""
