"""Pure functions of the embedder: hashing, token-aware chunking, rank fusion, pooling."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60  # the constant of Cormack et al. (2009); robust across collections
# Deterministic ids of the events the embedder publishes (uuid5 in this namespace).
EVENT_NAMESPACE = uuid.UUID("5b0e6a52-8f0b-4c57-9a3e-2f1d0c9b8a71")


def content_hash(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: equal text, equal hash, whatever its source."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets in the source text
    end: int
    tokens: int = 0  # tokens of the text (without special tokens)

    @property
    def digest(self) -> str:
        return content_hash(self.text)


def chunk_text(
    text: str, offsets: Sequence[tuple[int, int]], *, window: int, overlap: int
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``window`` tokens, ``overlap`` tokens shared.

    ``offsets`` are the (start, end) characters of each token of ``text`` as the model's
    tokenizer splits it, special tokens excluded. A text that fits is one chunk, verbatim.
    A longer one is cut at a sentence or line end in the last half of the window if there
    is one, else between words, else between tokens; the next chunk starts ``overlap``
    tokens back, at a word start. Chunk texts are slices of the original text.
    """
    if window < 1:
        raise ValueError("window must be at least 1 token")
    overlap = max(0, min(overlap, window // 2))
    if not offsets or not text.strip():
        return []
    n = len(offsets)
    if n <= window:
        return [Chunk(0, text, 0, len(text), n)]
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = n if start + window >= n else _cut(text, offsets, start, start + window, window)
        lo, hi = offsets[start][0], offsets[end - 1][1]
        chunks.append(Chunk(len(chunks), text[lo:hi], lo, hi, end - start))
        if end >= n:
            return chunks
        start = _next_start(text, offsets, start, end, overlap)


def _word_start(text: str, offsets: Sequence[tuple[int, int]], i: int) -> bool:
    """Token ``i`` begins a word (cutting before it does not split a word)."""
    if i == 0:
        return True
    prev_end, start = offsets[i - 1][1], offsets[i][0]
    if start > prev_end:
        return True  # whitespace between
    return not (text[start - 1 : start].isalnum() and text[start : start + 1].isalnum())


_SENTENCE_END = re.compile("[.!?:;\u3002\uff01\uff1f]['\")\\]]*$")


def _cut(text: str, offsets: Sequence[tuple[int, int]], start: int, limit: int, window: int) -> int:
    """Exclusive end token of the chunk starting at ``start`` (at most ``limit``)."""
    floor = start + max(1, window // 2)
    word_cut = 0
    for end in range(limit, floor, -1):  # the boundary between token end-1 and token end
        gap = text[offsets[end - 1][1] : offsets[end][0]]
        last = text[offsets[end - 1][0] : offsets[end - 1][1]]
        if "\n" in gap or (gap and _SENTENCE_END.search(last)):
            return end
        if not word_cut and _word_start(text, offsets, end):
            word_cut = end
    return word_cut or limit


def _next_start(
    text: str, offsets: Sequence[tuple[int, int]], start: int, end: int, overlap: int
) -> int:
    candidate = max(end - overlap, start + 1)
    for i in range(candidate, end):  # move forward to a word start, never past the cut
        if _word_start(text, offsets, i):
            return i
    return candidate  # no word starts there (e.g. CJK): overlap by tokens


def length_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indexes grouped into batches of at most ``size`` texts of similar length, longest
    first: a batch is padded to its longest text, so mixing lengths wastes compute."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + size] for i in range(0, len(order), size)]


def rrf(rankings: Sequence[Sequence[K]], *, k: int = RRF_K) -> list[tuple[K, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank of d).

    Returns (item, score), best first; ties keep the order of first appearance.
    """
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def candidates_for(top_k: int) -> int:
    """How many candidates each ranking contributes to the fusion."""
    return max(40, min(4 * top_k, 200))


def mean_unit(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The normalized mean of unit vectors (one vector for a text cut into chunks)."""
    if not vectors:
        raise ValueError("no vectors")
    dims = len(vectors[0])
    total = [0.0] * dims
    for vector in vectors:
        for i, value in enumerate(vector):
            total[i] += value
    norm = math.sqrt(sum(v * v for v in total)) or 1.0
    return [v / norm for v in total]


def embedding_event_id(
    tenant_id: str, source_id: uuid.UUID, model_id: str, text_hash: str
) -> uuid.UUID:
    """The same vector of the same text of one source is announced once, however often
    the write is redelivered or the outbox republished. The tenant is part of it: source
    ids are chosen by producers, so two tenants' memories may share one (and their text)."""
    return uuid.uuid5(
        EVENT_NAMESPACE, f"embedding.ready:{tenant_id}:{source_id}:{model_id}:{text_hash}"
    )


def sql_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    if "\x00" in value:
        raise ValueError("NUL in SQL literal")
    return "'" + value.replace("'", "''") + "'"
