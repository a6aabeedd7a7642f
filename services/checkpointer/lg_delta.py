"""Channel blobs of LangGraph threads as zstd deltas (docs/langgraph.md).

A new version of a channel is compressed with the bytes of an earlier version of the same
channel as zstd's raw-content dictionary: what the two share (a messages list that grew by
one message shares all but that message) costs a few bytes of references. Every
``keyframe_every``-th version in a chain is compressed alone, so a read decodes at most
that many frames, and retention can drop old versions without rewriting new ones.

The service keeps the newest decoded version of each channel it wrote or read
(``BlobCache``, bounded in bytes): the base of the next delta, and the answer to a read of
the head without decoding. Its entries are keyed by the row's ``blob_id``, so an entry can
only ever stand for the exact bytes of that row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import zstandard

# Below this, a zstd frame's header costs more than it saves.
RAW_BELOW = 64

ChannelKey = tuple[str, str, str, str]  # tenant, thread, namespace, channel


@dataclass(frozen=True)
class Cached:
    version: str
    blob_id: int
    raw: bytes
    depth: int


@dataclass(frozen=True)
class Encoded:
    codec: str  # raw | zstd | delta
    data: bytes
    base_id: int | None
    depth: int


@dataclass(frozen=True)
class StoredBlob:
    """A row as read: ``data`` None when the row is in the cache (not sent)."""

    blob_id: int
    base_id: int | None
    codec: str
    data: bytes | None


def encode(raw: bytes, base: Cached | None, *, level: int, keyframe_every: int) -> Encoded:
    """``raw`` as a delta on ``base`` when there is one and its chain is short enough,
    else alone; whichever codec is smallest (a delta that does not pay is a keyframe)."""
    if len(raw) < RAW_BELOW:
        return Encoded("raw", raw, None, 0)
    delta = None
    if base is not None and base.depth + 1 < keyframe_every and base.raw:
        frame = delta_compressor(base.raw, len(raw)).compress(raw)
        delta = Encoded("delta", frame, base.blob_id, base.depth + 1)
        if len(frame) * 4 < len(raw):  # it paid: no need to try a keyframe
            return delta
    alone = zstandard.ZstdCompressor(level=level).compress(raw)
    best = (
        Encoded("zstd", alone, None, 0) if len(alone) < len(raw) else Encoded("raw", raw, None, 0)
    )
    return delta if delta is not None and len(delta.data) < len(best.data) else best


# Writes are small and compressed alone, at a fast level. A compressor is reusable but not
# thread-safe: only the event loop's thread uses this one.
_WRITE_COMPRESSOR = zstandard.ZstdCompressor(level=3)


def pack_write(data: bytes | None) -> tuple[str, bytes | None]:
    """A pending write as stored: a zstd frame when that is smaller (a message, a tool
    result: text), else as it came."""
    if data is None or len(data) < RAW_BELOW:
        return "raw", data
    frame = _WRITE_COMPRESSOR.compress(data)
    return ("zstd", frame) if len(frame) < len(data) else ("raw", data)


def unpack_write(codec: str, data: bytes | None) -> bytes | None:
    if codec == "zstd" and data is not None:
        return zstandard.ZstdDecompressor().decompress(data)
    return data


def delta_compressor(base: bytes, size: int) -> zstandard.ZstdCompressor:
    """Level 1 with ``base`` as raw-content dictionary (loading it is most of a delta's
    cost, and a fast level loads it faster), its window and hash table sized to the
    dictionary: at level 1's defaults a frame reaches back only ~64 KiB, so a conversation
    past that was stored whole again at every step (about 30 KB a step at 500 messages,
    where this costs ~400 bytes). The same in engram_client.lg_held (no shared module)."""
    window = max(10, (len(base) + size).bit_length())
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=window, hash_log=max(16, window - 4)
    )
    return zstandard.ZstdCompressor(dict_data=_dictionary(base), compression_params=params)


def _dictionary(raw: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def decode_all(
    rows: Mapping[int, StoredBlob], cached: Callable[[int], bytes | None]
) -> dict[int, bytes]:
    """Every row's bytes, each delta on its decoded base (memoized: a chain shared by
    several versions is decoded once). A base that is neither read nor cached is a
    broken chain: ``KeyError``."""
    done: dict[int, bytes] = {}

    def one(blob_id: int) -> bytes:
        # Iterative: a chain is at most keyframe_every long, but never trust recursion depth.
        chain: list[StoredBlob] = []
        at: int | None = blob_id
        base_raw: bytes | None = None
        while at is not None:
            if at in done:
                base_raw = done[at]
                break
            hit = cached(at)
            if hit is not None:
                base_raw = done[at] = hit
                break
            row = rows[at]
            if row.data is None:
                raise KeyError(f"blob {at} was neither sent nor cached")
            chain.append(row)
            at = row.base_id if row.codec == "delta" else None
        for row in reversed(chain):
            assert row.data is not None
            if row.codec == "raw":
                base_raw = row.data
            elif row.codec == "zstd":
                base_raw = zstandard.ZstdDecompressor().decompress(row.data)
            else:
                assert base_raw is not None
                base_raw = zstandard.ZstdDecompressor(dict_data=_dictionary(base_raw)).decompress(
                    row.data
                )
            done[row.blob_id] = base_raw
        assert base_raw is not None
        return base_raw

    for blob_id in rows:
        one(blob_id)
    return done


class BlobCache:
    """The newest decoded version of each channel, least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[ChannelKey, Cached] = OrderedDict()
        self._by_id: dict[int, ChannelKey] = {}

    def get(self, key: ChannelKey) -> Cached | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def raw_of(self, blob_id: int) -> bytes | None:
        key = self._by_id.get(blob_id)
        return None if key is None else self._items[key].raw

    def put(self, key: ChannelKey, entry: Cached) -> None:
        if len(entry.raw) > self._max:
            self.drop(key)
            return
        self.drop(key)
        self._items[key] = entry
        self._by_id[entry.blob_id] = key
        self._size += len(entry.raw)
        while self._size > self._max:
            self.drop(next(iter(self._items)))

    def drop(self, key: ChannelKey) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old.raw)
            self._by_id.pop(old.blob_id, None)

    def drop_threads(self, tenant: str, threads: set[str] | None = None) -> None:
        """After a delete: that tenant's threads (all of them when ``threads`` is None)."""
        for key in [k for k in self._items if k[0] == tenant]:
            if threads is None or key[1] in threads:
                self.drop(key)

    def ids(self) -> list[int]:
        return list(self._by_id)
