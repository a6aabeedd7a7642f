"""The bytes of channel versions an ``EngramSaver`` put or read, by the service's blob id.

A stored version's bytes never change under its id (a new row gets a new id), so a
``get_tuple`` names the ids it holds for the thread (``GetTupleRequest.held``) and those
values come back without their bytes: the service neither reads nor decodes nor sends
them, and a graph resuming its own thread gets the reply of a small checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

ThreadKey = tuple[str, str]  # thread, namespace
# Ids named per request: the newest of the thread's (the contract allows 4096).
HELD_PER_REQUEST = 512


class HeldValue(NamedTuple):
    thread: ThreadKey
    type: str
    data: bytes


class HeldBlobs:
    """Least recently used out first, bounded in bytes (0: hold nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[int, HeldValue] = OrderedDict()
        self._by_thread: dict[ThreadKey, dict[int, None]] = {}  # insertion order: oldest first

    def put(self, blob_id: int, thread: ThreadKey, kind: str, data: bytes) -> None:
        if blob_id in self._items or len(data) > self._max:
            return
        self._items[blob_id] = HeldValue(thread, kind, data)
        self._by_thread.setdefault(thread, {})[blob_id] = None
        self._size += len(data)
        while self._size > self._max:
            self._drop(next(iter(self._items)))

    def snapshot(self, thread: ThreadKey) -> dict[int, HeldValue]:
        """The thread's newest held values, kept for one request: an eviction while it
        is on the way cannot take a value its reply leaves out."""
        ids = list(self._by_thread.get(thread, {}))[-HELD_PER_REQUEST:]
        out = {}
        for blob_id in ids:
            self._items.move_to_end(blob_id)
            out[blob_id] = self._items[blob_id]
        return out

    def drop_thread(self, thread_id: str) -> None:
        for key in [k for k in self._by_thread if k[0] == thread_id]:
            for blob_id in list(self._by_thread[key]):
                self._drop(blob_id)

    def _drop(self, blob_id: int) -> None:
        value = self._items.pop(blob_id)
        self._size -= len(value.data)
        ids = self._by_thread[value.thread]
        del ids[blob_id]
        if not ids:
            del self._by_thread[value.thread]
