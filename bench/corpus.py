"""Realistic chat texts and search queries for the embedder's benchmarks and tests:
seeded, so every run and every test sees the same corpus. They live in the service (the
int8 quality gate measures recall on them at load); this is the benchmarks' name for them.
"""

from __future__ import annotations

from services.embedder.gate import VOCAB, chat_texts, query_texts

__all__ = ["VOCAB", "chat_texts", "query_texts"]
