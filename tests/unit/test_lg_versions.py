"""EngramSaver's channel versions (client/engram_client/langgraph.py: next_version)."""

from __future__ import annotations

from engram_client.langgraph import next_version


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
