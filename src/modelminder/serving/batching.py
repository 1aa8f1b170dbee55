"""Micro-batching of concurrent predict requests (group commit).

Requests that arrive while the event loop is busy are scored together: their events are folded
in arrival order, scored with one model call, and committed in one transaction, and each
request gets its own answer once that transaction has committed. Nothing changes for a lone
request (it is scored as soon as the loop is free). A request whose events are invalid is
answered with its own error; requests that share an event_id are
scored one after the other, so the later one sees the first as a retry.

A batch that fails as a whole (one request's invalid event fails validation, which happens
before anything is written) is retried request by request, so each gets its own answer or
its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from modelminder.serving.service import Service

Events = Sequence[Mapping[str, Any]]


class MicroBatcher:
    """Score concurrent requests together; see the module docstring."""

    def __init__(self, service: Service, max_events: int = 1000) -> None:
        self.service = service
        self.max_events = max_events
        self._queue: list[tuple[Events, asyncio.Future[list[dict[str, Any]]]]] = []
        self._scheduled = False
        self.batches = 0  # scored batches (for tests and metrics)

    async def predict(self, events: Events) -> list[dict[str, Any]]:
        """The answers for ``events``, scored alone or with requests waiting alongside."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        self._queue.append((events, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._drain)  # after the handlers already runnable have queued
        return await answer

    def _drain(self) -> None:
        self._scheduled = False
        while self._queue:
            batch: list[tuple[Events, asyncio.Future[list[dict[str, Any]]]]] = []
            size, ids = 0, set[str]()
            while self._queue:
                events, answer = self._queue[0]
                own = {str(e.get("event_id")) for e in events}
                if batch and (size + len(events) > self.max_events or own & ids):
                    break
                self._queue.pop(0)
                batch.append((events, answer))
                size += len(events)
                ids |= own
            self._score(batch)

    def _score(self, batch: list[tuple[Events, asyncio.Future[list[dict[str, Any]]]]]) -> None:
        merged = [e for events, _ in batch for e in events]
        try:
            results = self.service.predict(merged)
        except Exception as exc:  # the batch failed as a whole: nothing of it was committed
            if len(batch) > 1:  # so each request gets its own answer or its own error
                for one in batch:
                    self._score([one])
                return
            _, answer = batch[0]
            if not answer.done():
                answer.set_exception(exc)
            return
        self.batches += 1
        at = 0
        for events, answer in batch:
            if not answer.done():
                answer.set_result(results[at : at + len(events)])
            at += len(events)
