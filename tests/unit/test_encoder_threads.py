"""The encoder thread runs queries on their own torch thread count, batches on torch's."""

from __future__ import annotations

from typing import Any

import torch

from services.embedder.encoder import Encoder


async def test_queries_use_their_thread_count_and_batches_keep_the_default() -> None:
    default = torch.get_num_threads()
    encoder = Encoder(object(), query_threads=1)  # type: ignore[arg-type]

    def threads(_: Any) -> int:
        return torch.get_num_threads()

    try:
        assert await encoder.call(threads, urgent=True) == 1
        assert await encoder.call(threads) == default
        assert await encoder.call(threads, urgent=True) == 1
    finally:
        encoder.close()
    assert torch.get_num_threads() == default  # put back after each query
