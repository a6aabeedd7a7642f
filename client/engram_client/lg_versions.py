"""Channel versions of ``EngramSaver``."""

from __future__ import annotations

import random

VERSION_DIGITS = 12  # a channel's version counter: a trillion steps


def next_version(current: str | int | None) -> str:
    """The version after ``current``. As LangGraph's Postgres saver's, a counter that
    sorts as text and a random part (two branches of a thread never share a version), but
    25 characters, not 51: a version is stored four times in each checkpoint and once in
    each blob's key. A short version sorts above every long one (its first non-zero digit
    comes sooner), so a thread written with the long form keeps its order."""
    if current is None:
        number = 0
    elif isinstance(current, int):
        number = current
    else:
        number = int(current.split(".")[0])
    return f"{number + 1:0{VERSION_DIGITS}}.{random.getrandbits(48):012x}"
