"""Token counts remembered: within one build (``CountOnce``: a source's text is counted when
the plan allots the budget and again when it packs it) and across builds (``CountCache``).

A chat's next turn is built from mostly the same texts as the last: the conversation's
recent messages but the newest, its summaries, the user's memories and the agent's
knowledge the query finds again. Counting is most of a build's own CPU (a BPE encode of
every candidate text), so a count is kept, per tokenizer, under
a 16-byte BLAKE2b digest of its text (the texts themselves are not held), least recently
used out first. A count is a pure function of (tokenizer, text), so a remembered one is
the count; the handler's final check of the budget counts every segment with the
tokenizer itself, never from here.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from services.context.tokens import Tokenizer


class CountCache:
    """Counts of texts seen in earlier builds, at most ``max_entries`` (0: none kept)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self.hits = self.misses = 0  # shown in the builder's health

    def count(self, tok: Tokenizer, text: str) -> int:
        if self.max_entries == 0:
            return tok.count(text)
        # Keyed by the tokenizer's name: two tokenizers never share a count.
        digest = hashlib.blake2b(
            text.encode(errors="surrogatepass"), digest_size=16, key=tok.name.encode()
        ).digest()
        n = self._counts.get(digest)
        if n is not None:
            self._counts.move_to_end(digest)
            self.hits += 1
            return n
        self.misses += 1
        n = self._counts[digest] = tok.count(text)
        if len(self._counts) > self.max_entries:
            self._counts.popitem(last=False)
        return n


class CountOnce:
    """``tok`` that counts each distinct text once per build, through ``cache`` across
    builds (see the module docstring)."""

    def __init__(self, tok: Tokenizer, cache: CountCache) -> None:
        self.name = tok.name
        self._tok, self._cache = tok, cache
        self._counts: dict[str, int] = {}

    def count(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            n = self._counts[text] = self._cache.count(self._tok, text)
        return n

    def head(self, text: str, limit: int) -> tuple[str, int]:
        return self._tok.head(text, limit)

    def tail(self, text: str, limit: int) -> tuple[str, int]:
        return self._tok.tail(text, limit)
