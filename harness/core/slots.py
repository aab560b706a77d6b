"""A limit on requests in flight that lets waiting requests in by priority, then in order of arrival.

The model client keeps one per endpoint. A SKILL-MIX conversation is two
student turns and then its grading runs; when every conversation starts at
once, plain first-come order would send every first turn before any second
turn, so no answer would reach the judge until half the student's work was
done, and the judge's server would wait idle meanwhile. Letting a
conversation's later requests in first finishes conversations early, and the
judge works alongside the student.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


class PrioritySlots:
    """At most ``size`` holders at once; a freed slot goes to the waiter with the lowest priority
    number, the earliest among equals."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a limit of requests in flight must be at least 1, got {size}")
        self.size = size
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    @property
    def held(self) -> int:
        return self.size - self._free

    @contextlib.asynccontextmanager
    async def hold(self, priority: int = 0) -> AsyncIterator[None]:
        if self._free and not self._waiting:
            self._free -= 1
        else:
            entry = (priority, next(self._arrival), asyncio.get_running_loop().create_future())
            heapq.heappush(self._waiting, entry)
            try:
                await entry[2]
            except asyncio.CancelledError:
                if entry[2].done() and not entry[2].cancelled():
                    self._release()  # handed a slot just as we were cancelled: pass it on
                elif entry in self._waiting:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # the slot passes straight to this waiter
                return
        self._free += 1
