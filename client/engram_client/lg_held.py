"""The bytes of channel versions an ``EngramSaver`` put or read, by the service's blob id.

A stored version's bytes never change under its id (a new row gets a new id), so a
``get_tuple`` names the ids it holds for the thread (``GetTupleRequest.held``) and those
values come back without their bytes: the service neither reads nor decodes nor sends
them, and a graph resuming its own thread gets the reply of a small checkpoint.

The newest version of each channel this saver put is the base of its next one: the
saver sends a zstd frame compressed with the held bytes as dictionary (``BlobIn.base_id``),
so a messages list grown by one message crosses NATS as about one message, not the whole
conversation (``delta``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import zstandard

ThreadKey = tuple[str, str]  # thread, namespace
# Ids named per request: the newest of the thread's (the contract allows 4096).
HELD_PER_REQUEST = 512
# Below this, a value is sent as it is: the service compresses it (a delta's frame and
# dictionary cost more than they save).
DELTA_ABOVE = 1024


class Head(NamedTuple):
    """The newest version of a channel this saver put: the base of its next delta."""

    blob_id: int
    depth: int  # deltas since a value stored alone
    data: bytes


def delta(raw: bytes, base: bytes) -> bytes | None:
    """``raw`` as a zstd frame on ``base`` (raw-content dictionary), or None when it does
    not pay (the service then stores the value its own way)."""
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    # Level 1 (loading the dictionary is most of the cost: a fast level loads it faster),
    # its window and hash table sized to the dictionary: at level 1's defaults a frame
    # reaches back only ~64 KiB, and a long conversation's delta would not pay. As the
    # service's (services/checkpointer/lg_delta.py: delta_compressor).
    window = max(10, (len(base) + len(raw)).bit_length())
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=window, hash_log=max(16, window - 4)
    )
    frame = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(raw)
    return frame if len(frame) * 4 < len(raw) else None


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
        self._heads: dict[tuple[ThreadKey, str], tuple[int, int]] = {}  # -> (blob_id, depth)

    def put(self, blob_id: int, thread: ThreadKey, kind: str, data: bytes) -> None:
        if blob_id in self._items or len(data) > self._max:
            return
        self._items[blob_id] = HeldValue(thread, kind, data)
        self._by_thread.setdefault(thread, {})[blob_id] = None
        self._size += len(data)
        while self._size > self._max:
            self._drop(next(iter(self._items)))

    def put_head(self, thread: ThreadKey, channel: str, blob_id: int, depth: int) -> None:
        """``blob_id`` (held: ``put`` first) is the channel's newest version put here."""
        self._heads[(thread, channel)] = (blob_id, depth)

    def head(self, thread: ThreadKey, channel: str) -> Head | None:
        found = self._heads.get((thread, channel))
        if found is None:
            return None
        value = self._items.get(found[0])
        if value is None:  # evicted since
            del self._heads[(thread, channel)]
            return None
        return Head(found[0], found[1], value.data)

    def drop_heads(self, thread: ThreadKey) -> None:
        """After a delta was refused (its base is gone): the next values go whole."""
        for key in [k for k in self._heads if k[0] == thread]:
            del self._heads[key]

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
        for head in [k for k in self._heads if k[0][0] == thread_id]:
            del self._heads[head]
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
