"""Token counts remembered across builds (services/context/counts.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.context.counts import CountCache, CountOnce
from services.context.tokens import tokenizer


@dataclass
class Words:
    """A tokenizer that counts words and what it was asked."""

    name: str = "words"
    asked: list[str] = field(default_factory=list)

    def count(self, text: str) -> int:
        self.asked.append(text)
        return len(text.split())

    def head(self, text: str, limit: int) -> tuple[str, int]:
        return text, self.count(text)

    def tail(self, text: str, limit: int) -> tuple[str, int]:
        return text, self.count(text)


def test_a_text_seen_in_an_earlier_build_is_not_counted_again() -> None:
    tok, cache = Words(), CountCache(10)
    first, second = CountOnce(tok, cache), CountOnce(tok, cache)
    assert [first.count("a b"), first.count("a b"), first.count("c")] == [2, 2, 1]
    assert [second.count("a b"), second.count("d e f")] == [2, 3]
    assert tok.asked == ["a b", "c", "d e f"]
    assert (cache.hits, cache.misses) == (1, 3)


def test_the_least_recently_used_count_goes_first() -> None:
    tok, cache = Words(), CountCache(2)
    for text in ("a", "b", "a", "c", "a", "b"):  # "b" is out when "c" comes in
        cache.count(tok, text)
    assert tok.asked == ["a", "b", "c", "b"]


def test_zero_keeps_nothing_and_tokenizers_do_not_share_counts() -> None:
    words, none = Words(), CountCache(0)
    assert [none.count(words, "a b"), none.count(words, "a b")] == [2, 2]
    assert words.asked == ["a b", "a b"]
    cache, other = CountCache(10), Words(name="other")
    cache.count(words, "x y")
    cache.count(other, "x y")
    assert other.asked == ["x y"]


def test_a_remembered_count_is_the_tokenizers_own() -> None:
    tok, cache = tokenizer("cl100k_base"), CountCache(100)
    texts = ["hello world", "héllo wörld 🙂", "a" * 5000, "", "<|endoftext|> is text"]
    for _ in range(2):
        assert [cache.count(tok, t) for t in texts] == [tok.count(t) for t in texts]
    assert cache.hits == len(texts)
