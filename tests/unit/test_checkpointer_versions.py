"""Versions: canonical form, snapshots, rebuilding, the ordering decision, partitions."""

from __future__ import annotations

import copy
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkpointer.history import InconsistentHistory, NotReadable, rebuilt
from services.checkpointer.ordering import Candidate, Ref, key_of, plan
from services.checkpointer.patch import PatchRejected, apply_patch
from services.checkpointer.rows import touched_partitions
from services.checkpointer.versions import (
    base_order,
    canonical,
    check_shape,
    compress,
    decompress,
    empty_state,
    read_snapshot,
    replay,
    state_hash,
)


def test_canonical_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": {"d": [1.5, "é"], "c": None}}) == (
        '{"a":{"c":null,"d":[1.5,"é"]},"b":1}'.encode()
    )
    assert state_hash(canonical(empty_state())).hex() == (
        state_hash(b'{"local":{},"persistent":{},"session":{},"shared":{}}').hex()
    )


def test_canonical_rejects_what_json_cannot_hold() -> None:
    with pytest.raises(PatchRejected, match="not storable"):
        canonical({"big": 2**70})
    with pytest.raises(PatchRejected, match="U\\+0000"):
        canonical({"nul": "a\x00b"})
    assert canonical({"text": "\\u0000"}) == b'{"text":"\\\\u0000"}'  # the six characters


@pytest.mark.parametrize(
    "doc",
    [
        {"local": {}, "shared": {}, "session": {}},
        {"local": {}, "shared": {}, "session": {}, "persistent": {}, "extra": {}},
        {"local": [], "shared": {}, "session": {}, "persistent": {}},
        [],
    ],
)
def test_shape_keeps_four_object_partitions(doc: Any) -> None:
    with pytest.raises(PatchRejected, match="partition"):
        check_shape(doc)


def test_compression_above_threshold_only() -> None:
    small = canonical({"a": "x" * 10})
    assert compress(small, threshold=4096).compression == "none"
    big = canonical({"a": "x" * 10_000})
    snap = compress(big, threshold=4096)
    assert snap.compression == "zstd"
    assert len(snap.data) < len(big) / 10
    assert snap.size_bytes == len(big)
    assert decompress(snap.data, snap.compression) == big
    archived = compress(small, threshold=4096, archive=True)
    assert archived.compression == "zstd"
    assert read_snapshot(archived.data, "zstd") == {"a": "x" * 10}


def test_base_order_prefers_fewer_patches() -> None:
    assert base_order(12, 10, 20) == [("forward", 10), ("backward", 20)]
    assert base_order(18, 10, 20) == [("backward", 20), ("forward", 10)]
    assert base_order(15, 10, 20) == [("backward", 20), ("forward", 10)]  # a tie
    assert base_order(18, None, 20) == [("backward", 20)]
    assert base_order(5, None, None) == []


# The pure version of "every version rebuilds exactly": random patch sequences on the
# four-partition document, snapshots every N, each version from the nearest snapshot.
partition = st.sampled_from(["local", "shared", "session", "persistent"])
leaf = (
    st.none()
    | st.integers(-1000, 1000)
    | st.booleans()
    | st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=4)
)


@st.composite
def steps(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    out = []
    for _ in range(draw(st.integers(1, 40))):
        part = draw(partition)
        key = draw(st.sampled_from(["a", "b", "c", "list"]))
        kind = draw(st.sampled_from(["set", "remove", "append", "merge_nested"]))
        path = f"/{part}/{key}"
        if kind == "set":
            out.append([{"op": "add", "path": path, "value": draw(leaf)}])
        elif kind == "remove":
            out.append([{"op": "add", "path": path, "value": 0}, {"op": "remove", "path": path}])
        elif kind == "append":
            out.append(
                [
                    {"op": "add", "path": path, "value": []},
                    {"op": "add", "path": path + "/-", "value": draw(leaf)},
                ]
            )
        else:
            out.append(
                [
                    {"op": "add", "path": path, "value": {"x": draw(leaf)}},
                    {"op": "move", "from": path + "/x", "path": f"/{part}/moved"},
                ]
            )
    return out


@settings(max_examples=100)
@given(steps(), st.integers(1, 7))
def test_every_version_rebuilds_from_nearest_snapshot(
    patches: list[list[dict[str, Any]]], every: int
) -> None:
    doc: dict[str, Any] = empty_state()
    reference = [canonical(doc)]
    forward, inverse = [], []
    snapshots = {0: canonical(doc)}
    for ops in patches:
        doc, undo = apply_patch(doc, ops)
        forward.append(orjson.dumps(ops))
        inverse.append(orjson.dumps(undo))
        reference.append(canonical(doc))
        if (len(reference) - 1) % every == 0:
            snapshots[len(reference) - 1] = canonical(doc)
    head = len(reference) - 1
    snapshots[head] = reference[head]
    for target in range(head + 1):
        below = max(v for v in snapshots if v <= target)
        above = min(v for v in snapshots if v >= target)
        direction, base = base_order(target, below, above)[0]
        assert abs(target - base) <= every
        start = orjson.loads(snapshots[base])
        if direction == "forward":
            rebuilt = replay(start, [orjson.loads(p) for p in forward[base:target]])
        else:
            rebuilt = replay(start, [orjson.loads(p) for p in reversed(inverse[target:base])])
        assert canonical(rebuilt) == reference[target]
        assert state_hash(canonical(rebuilt)) == state_hash(reference[target])


def read_row(**fields: Any) -> dict[str, Any]:
    """A row as checkpoint.read_version returns it: state at version 3, nothing pruned."""
    return {
        "state_id": 1,
        "version": 3,
        "state_hash": b"h" * 32,
        "history_floor_version": 0,
        "target": 2,
        "target_hash": None,
        "direction": "forward",
        "base": 0,
        "snapshot": None,
        "compression": None,
        "head_doc": None,
        "patches": "[]",
        **fields,
    }


def test_a_read_row_rebuilds_from_its_base_and_checks_the_hash() -> None:
    one = [[{"op": "add", "path": "/local/n", "value": 1}]]
    doc, digest = rebuilt(read_row(target=1, patches=orjson.dumps(one).decode()))
    assert doc["local"] == {"n": 1} and digest == state_hash(canonical(doc))
    head = orjson.dumps({**empty_state(), "local": {"n": 2}}).decode()
    back = [[{"op": "replace", "path": "/local/n", "value": 1}]]
    doc, _ = rebuilt(
        read_row(
            target=1,
            direction="backward",
            base=3,
            head_doc=head,
            patches=orjson.dumps(back).decode(),
            target_hash=digest,
        )
    )
    assert doc["local"] == {"n": 1}
    snap = compress(canonical(doc), threshold=0)
    doc, _ = rebuilt(
        read_row(
            target=1, base=1, snapshot=snap.data, compression=snap.compression, target_hash=digest
        )
    )
    assert doc["local"] == {"n": 1}
    with pytest.raises(InconsistentHistory):
        rebuilt(read_row(target=1, patches=orjson.dumps(one).decode(), target_hash=b"x" * 32))


@pytest.mark.parametrize(("target", "code"), [(7, "not_found"), (-1, "not_found"), (1, "pruned")])
def test_a_read_row_without_a_way_says_why(target: int, code: str) -> None:
    with pytest.raises(NotReadable) as err:
        rebuilt(read_row(target=target, direction=None))
    assert err.value.code == code


K1, K2 = ("t", "u", "a1"), ("t", "u", "a2")


def cand(seq: int, key: tuple[str, str, str], *waits: int, parked: bool = False) -> Candidate:
    return Candidate(seq, UUID(int=seq), key, tuple(Ref(w, UUID(int=w)) for w in waits), parked)


def test_plan_applies_in_order_and_parks_what_waits() -> None:
    new = [cand(5, K1, 3), cand(7, K1, 3), cand(8, K2, 4), cand(2, K1)]
    ready, waiting = plan(new, done={4})
    assert [c.seq for c in ready] == [2, 8]
    assert [(c.seq, [w[0] for w in c.waits_for]) for c in waiting] == [(5, [3]), (7, [3, 5])]
    # Once 3 is done, a parked 5 and the new 7 apply, in stream order.
    ready, waiting = plan([cand(7, K1, 3), cand(5, K1, 3, parked=True)], done={3})
    assert [c.seq for c in ready] == [5, 7] and waiting == []


def test_plan_applies_a_parked_message_when_its_predecessor_applies_here() -> None:
    ready, waiting = plan([cand(9, K1, 4, parked=True), cand(4, K1)], done=set())
    assert [c.seq for c in ready] == [4, 9] and waiting == []


def test_key_of_reads_raw_messages() -> None:
    eid = uuid4()
    body = {"event_id": str(eid), "tenant_id": "t", "payload": {"user_id": "u", "agent_id": "a"}}
    assert key_of(orjson.dumps(body)) == (("t", "u", "a"), eid)
    assert key_of(b"not json") == (None, None)
    assert key_of(b'{"payload": {}}') == (None, None)


def test_touched_partitions() -> None:
    assert touched_partitions([{"op": "add", "path": "/local/a", "value": 1}]) == {"local"}
    assert touched_partitions(
        [
            {"op": "move", "from": "/session/x", "path": "/shared/x"},
            {"op": "copy", "from": "/persistent/y", "path": "/local/y"},
        ]
    ) == {"session", "shared", "local"}
    assert len(touched_partitions([{"op": "replace", "path": "", "value": {}}])) == 4


def test_replay_checks_the_shape() -> None:
    with pytest.raises(PatchRejected):
        replay(copy.deepcopy(empty_state()), [[{"op": "remove", "path": "/local"}]])
