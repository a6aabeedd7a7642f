"""EngramSaver's channel versions (langgraph.py: next_version) and deltas (lg_held.py)."""

from __future__ import annotations

import random

import zstandard

from engram_client.lg_held import delta
from engram_client.lg_versions import next_version


def test_versions_sort_as_text_in_the_order_of_their_counter() -> None:
    versions = [next_version(None)]
    for _ in range(1200):
        versions.append(next_version(versions[-1]))
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert versions[0].startswith("000000000001.") and len(versions[0]) == 25
    assert next_version(41).startswith("000000000042.")


def test_a_short_version_follows_the_long_form_of_langgraphs_postgres_saver() -> None:
    # A thread written before keeps its order: the next version sorts above the last.
    for last in (1, 57, 10**9):
        long_form = f"{last:032}.{0.7699633394149583:016}"
        following = next_version(long_form)
        assert following > long_form and int(following.split(".")[0]) == last + 1
    assert next_version(f"{5:032}.0") > f"{99999:032}.0"  # above every long one


def test_the_saver_sends_a_long_conversation_grown_by_one_message_as_about_one_message() -> None:
    turn = b'{"role": "user", "content": "the agent plans a trip to the river"}, '
    for n in (100, 4000):  # 6 KB and 270 KB
        base = b"[" + turn * n
        frame = delta(base + turn, base)
        assert frame is not None and len(frame) < 200, (n, frame and len(frame))
        dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        assert zstandard.ZstdDecompressor(dict_data=dictionary).decompress(frame) == base + turn
    assert delta(random.Random(1).randbytes(2000), b"x" * 300) is None  # does not pay
