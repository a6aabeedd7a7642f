"""Extractive summaries: keep the most central sentences, in their original order.

Two kinds of centrality, one rule ("a sentence that is like the others says what they
say"): for a session's messages (no vectors at hand) the TF-IDF cosine of each sentence
to the whole; for a cluster of memories, the mean cosine of each memory's vector to the
others (``central_order``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
from numpy.typing import NDArray

SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
STOPWORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    )
)
MAX_SENTENCE_CHARS = 400


def sentences(text: str) -> list[str]:
    return [s.strip()[:MAX_SENTENCE_CHARS] for s in SENTENCE.split(text) if s.strip()]


def words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in WORD.findall(text)) if w not in STOPWORDS]


def lexical_summary(texts: list[str], keep: int) -> list[str]:
    """The ``keep`` sentences of ``texts`` closest to the whole (TF-IDF cosine), in order."""
    found = [s for t in texts for s in sentences(t)]
    if len(found) <= keep:
        return found
    bags = [Counter(words(s)) for s in found]
    df = Counter(w for bag in bags for w in bag)
    n = len(found)
    idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
    whole: Counter[str] = Counter()
    for bag in bags:
        whole.update(bag)

    def vec(bag: Counter[str]) -> dict[str, float]:
        return {w: c * idf[w] for w, c in bag.items()}

    centre = vec(whole)
    centre_norm = math.sqrt(sum(v * v for v in centre.values())) or 1.0

    def centrality(bag: Counter[str]) -> float:
        v = vec(bag)
        norm = math.sqrt(sum(x * x for x in v.values()))
        if not norm:
            return 0.0
        return sum(x * centre.get(w, 0.0) for w, x in v.items()) / (norm * centre_norm)

    ranked = sorted(range(n), key=lambda i: (-centrality(bags[i]), i))[:keep]
    return [found[i] for i in sorted(ranked)]


def central_order(vectors: NDArray[np.float32]) -> list[int]:
    """Indexes of unit vectors, most central first (mean cosine to the others)."""
    if len(vectors) == 1:
        return [0]
    sims = vectors @ vectors.T
    mean = (sims.sum(axis=1) - 1.0) / (len(vectors) - 1)
    return [int(i) for i in np.argsort(-mean, kind="stable")]


def keywords(texts: list[str], keep: int = 3) -> list[str]:
    """The most frequent content words of ``texts`` (a cluster's concept name)."""
    counts = Counter(w for t in texts for w in set(words(t)))
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]]
