"""Current documents kept in memory between batches, so a write does not read a 50 KB
state back from the database. An entry is used only when its version and hash equal the
locked row's (another replica may have moved the state on), and is dropped when a batch
fails (its document may be ahead of the rolled-back row)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from services.checkpointer.patch import Document
from services.checkpointer.repo import Key


@dataclass(frozen=True)
class Cached:
    version: int
    state_hash: bytes
    doc: Document


class StateCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Key, Cached] = OrderedDict()

    def take(self, key: Key, version: int, state_hash: bytes) -> Document | None:
        cached = self._items.get(key)
        if cached is None or cached.version != version or cached.state_hash != state_hash:
            return None
        self._items.move_to_end(key)
        return cached.doc

    def put(self, key: Key, cached: Cached) -> None:
        if self._size <= 0:
            return
        self._items[key] = cached
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def forget(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)
