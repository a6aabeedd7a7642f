"""Recently embedded vectors by (model id, text hash), so the pump does not ask the model
(or the database) again for a text it has just embedded."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class VectorCache:
    """An LRU of bounded size."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, model_id: str, digest: str) -> np.ndarray | None:
        value = self._items.get((model_id, digest))
        if value is not None:
            self._items.move_to_end((model_id, digest))
        return value

    def put(self, model_id: str, digest: str, vector: np.ndarray) -> None:
        if self._size <= 0:
            return
        self._items[(model_id, digest)] = vector
        self._items.move_to_end((model_id, digest))
        while len(self._items) > self._size:
            self._items.popitem(last=False)
