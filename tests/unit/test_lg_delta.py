"""LangGraph channel blobs as zstd deltas (services/checkpointer/lg_delta.py)."""

from __future__ import annotations

import json
import random

import pytest

from services.checkpointer.lg_delta import (
    BlobCache,
    Cached,
    StoredBlob,
    decode_all,
    encode,
    pack_write,
    unpack_write,
)

LEVEL, EVERY = 3, 4


def messages(n: int) -> bytes:
    return json.dumps(
        [{"role": "user", "content": f"message {i}: " + "lorem ipsum " * 15} for i in range(n)]
    ).encode()


def test_a_list_grown_by_one_message_costs_about_one_message() -> None:
    before, after = messages(50), messages(51)
    one = len(after) - len(before)
    base = Cached("50", 1, before, 0)
    delta = encode(after, base, level=LEVEL, keyframe_every=EVERY)
    alone = encode(after, None, level=LEVEL, keyframe_every=EVERY)
    assert (delta.codec, delta.base_id, delta.depth) == ("delta", 1, 1)
    assert alone.codec == "zstd"
    assert len(delta.data) < one  # less than the new message's own bytes
    assert len(delta.data) * 5 < len(alone.data)


def test_every_keyframe_every_th_version_stands_alone() -> None:
    base = Cached("3", 7, messages(3), EVERY - 1)  # its chain is as long as it may be
    assert encode(messages(4), base, level=LEVEL, keyframe_every=EVERY).codec == "zstd"
    assert encode(b"tiny", base, level=LEVEL, keyframe_every=EVERY).codec == "raw"


def test_a_chain_decodes_from_its_keyframe_or_from_a_cached_base() -> None:
    raws = [messages(n) for n in range(1, 5)]
    rows: dict[int, StoredBlob] = {}
    base: Cached | None = None
    for blob_id, raw in enumerate(raws, start=1):
        enc = encode(raw, base, level=LEVEL, keyframe_every=10)
        rows[blob_id] = StoredBlob(blob_id, enc.base_id, enc.codec, enc.data)
        base = Cached(str(blob_id), blob_id, raw, enc.depth)
    assert [r.codec for r in rows.values()] == ["zstd", "delta", "delta", "delta"]
    assert decode_all(rows, lambda _: None) == dict(enumerate(raws, start=1))
    # Blob 2 is in the cache: its bytes were not sent, and blob 1 is not needed.
    sent = {4: rows[4], 3: rows[3], 2: StoredBlob(2, 1, "delta", None)}
    assert decode_all(sent, {2: raws[1]}.get)[4] == raws[3]
    with pytest.raises(KeyError):
        decode_all(sent, lambda _: None)


def test_the_cache_keeps_its_byte_budget_and_forgets_deleted_threads() -> None:
    cache = BlobCache(max_bytes=100)
    cache.put(("t", "a", "", "m"), Cached("1", 1, b"x" * 60, 0))
    cache.put(("t", "b", "", "m"), Cached("1", 2, b"y" * 60, 0))  # pushes the first out
    assert cache.get(("t", "a", "", "m")) is None
    assert cache.raw_of(2) == b"y" * 60
    assert cache.raw_of(1) is None
    cache.drop_threads("t", {"b"})
    assert cache.ids() == []


def test_a_pending_write_is_stored_compressed_when_that_is_smaller() -> None:
    text = ("the agent plans a trip to the river with a budget " * 8).encode()
    codec, stored = pack_write(text)
    assert codec == "zstd" and stored is not None and len(stored) * 3 < len(text)
    assert unpack_write(codec, stored) == text
    noise = random.Random(1).randbytes(500)  # does not compress: kept as it came
    assert pack_write(noise) == ("raw", noise)
    assert pack_write(b"tiny") == ("raw", b"tiny")
    assert pack_write(None) == ("raw", None)
    assert unpack_write("raw", b"tiny") == b"tiny"


def test_a_long_conversation_grown_by_one_message_still_costs_about_one_message() -> None:
    # Past level 1's default window (~64 KiB) a frame could not reach the start of its
    # dictionary: each version of a long conversation was stored whole again.
    for n in (300, 900):
        base, grown = messages(n - 1), messages(n)
        assert len(base) > 64 * 1024
        base_entry = Cached(version="1", blob_id=1, raw=base, depth=0)
        out = encode(grown, base_entry, level=LEVEL, keyframe_every=EVERY)
        assert out.codec == "delta" and len(out.data) < 1024, (n, len(out.data))
        decoded = decode_all({2: StoredBlob(2, 1, "delta", out.data)}, {1: base}.get)
        assert decoded[2] == grown
