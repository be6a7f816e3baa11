"""The runtime's bounded hand-off from paho's network threads to the ingest thread.

Like `queue.Queue`, but items move in chunks: a network thread hands over every
message of a socket read at once and the ingest thread takes up to a batch at once,
so the lock both threads contend for is taken once per chunk, not once per message.
The bound counts messages, so memory stays bounded however the chunks are cut.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class MessageQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._waiting_producers = 0

    def put_many(self, items: list[T], timeout: float | None = None) -> bool:
        """Add all of `items` once there is room for them; False on timeout.

        A chunk larger than the whole bound goes in when the queue is empty, so an
        oversized burst waits for the consumer instead of deadlocking.
        """
        if not items:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while self._items and len(self._items) + len(items) > self.maxsize:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._waiting_producers += 1
                try:
                    self._not_full.wait(remaining)
                finally:
                    self._waiting_producers -= 1
            self._items.extend(items)
            self._not_empty.notify()
        return True

    def put(self, item: T, timeout: float | None = None) -> bool:
        return self.put_many([item], timeout)

    def get_many(self, limit: int, timeout: float | None = None) -> list[T]:
        """Up to `limit` items, waiting at most `timeout` for the first one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_empty:
            while not self._items:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._not_empty.wait(remaining)
            items = self._items
            if len(items) <= limit:
                taken = list(items)
                items.clear()
            else:
                taken = [items.popleft() for _ in range(limit)]
            self._not_full.notify_all()
        return taken

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        """True when a producer has to wait: at the bound, or a chunk that does
        not fit is waiting for room."""
        return len(self._items) >= self.maxsize or self._waiting_producers > 0
