"""The checkable facts a memory states: numbers, dates, weekdays and names.

Two memories can be near in meaning (cosine 0.99: "Chloe's order #93428 came broken" and
"Chloe's order #82883 came broken") and still be different facts. Duplicates state the
same facts, however they are worded ("8 minutes" / "eight minutes", "18 January" /
"January 18" / "2026-01-18"). So merge asks both: near in meaning, and no fact of one kind
that the two state differently (``compatible``). A paraphrase may leave a fact out; it may
not change one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
YEAR = r"(?:,?\s+(?:19|20)\d{2}\b)?"  # a date's year: often added or left out
DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH}\b{YEAR}", re.I)
MONTH_DAY = re.compile(rf"\b{MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?!\s*(?:am|pm|:)){YEAR}", re.I)
TIME = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b|\b(\d{1,2}):(\d{2})\b", re.I)
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
LIST_MARKER = re.compile(r"\(\d{1,2}\)|(?<![\w.])\d{1,2}[.)](?=\s)")  # "(1)", "2." of a list
NUMBER_WORD = re.compile(rf"\b({'|'.join(NUMBER_WORDS)})\b", re.I)
WEEKDAY = re.compile(rf"\b({'|'.join(WEEKDAYS)})s?\b", re.I)
# A capitalized word not opening a sentence: a name of a person, place, product.
NAME = re.compile(r"(?<![.!?:]\s)(?<!^)\b([A-Z][a-zA-Z]+)")
NOT_NAMES = (
    frozenset(MONTHS)
    | frozenset(WEEKDAYS)
    | frozenset(
        (
            "i",
            "the",
            "a",
            "an",
            "on",
            "in",
            "to",
            "for",
            "from",
            "at",
            "by",
            "and",
            "or",
            "then",
            "first",
            "finally",
            "user",
            "users",
            "how",
            "when",
            "what",
            "step",
            "steps",
        )
    )
)


@dataclass(frozen=True)
class Facts:
    numbers: frozenset[str]
    dates: frozenset[tuple[int, int]]  # (month, day); the year is often left out
    times: frozenset[tuple[int, int]]  # (hour, minute), 24-hour
    weekdays: frozenset[str]
    names: frozenset[str]


def _month(name: str) -> int:
    return next(i + 1 for i, m in enumerate(MONTHS) if m.startswith(name.lower()[:3]))


def facts(text: str) -> Facts:
    dates: set[tuple[int, int]] = set()

    def iso(m: re.Match[str]) -> str:
        dates.add((int(m.group(2)), int(m.group(3))))
        return " "

    def day_month(m: re.Match[str]) -> str:
        dates.add((_month(m.group(2)), int(m.group(1))))
        return " "

    def month_day(m: re.Match[str]) -> str:
        dates.add((_month(m.group(1)), int(m.group(2))))
        return " "

    times: set[tuple[int, int]] = set()

    def time_of(m: re.Match[str]) -> str:
        if m.group(3):  # 7 am, 7:30 pm
            hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
            times.add((hour, int(m.group(2) or 0)))
        else:
            times.add((int(m.group(4)), int(m.group(5))))
        return " "

    rest = MONTH_DAY.sub(month_day, DAY_MONTH.sub(day_month, ISO_DATE.sub(iso, text)))
    rest = LIST_MARKER.sub(" ", TIME.sub(time_of, rest))
    words = NUMBER_WORD.sub(lambda m: str(NUMBER_WORDS.index(m.group(1).lower())), rest)
    numbers = {_number(n) for n in NUMBER.findall(words)}
    names = {n.lower() for n in NAME.findall(text)} - NOT_NAMES
    return Facts(
        numbers=frozenset(numbers),
        dates=frozenset(dates),
        times=frozenset(times),
        weekdays=frozenset(w.lower() for w in WEEKDAY.findall(text)),
        names=frozenset(names),
    )


def _number(text: str) -> str:
    """One spelling per number: 07 -> 7, 1,5 and 1.50 -> 1.5."""
    text = text.replace(",", ".")
    if "." not in text:
        return str(int(text))
    return text.rstrip("0").rstrip(".")


def _agree(a: frozenset[object], b: frozenset[object]) -> bool:
    # Either leaves the kind out, or one states a subset of what the other states.
    return not a or not b or a <= b or b <= a


def compatible(a: Facts, b: Facts) -> bool:
    """No kind of fact that the two state differently."""
    return (
        _agree(a.numbers, b.numbers)
        and _agree(a.dates, b.dates)
        and _agree(a.times, b.times)
        and _agree(a.weekdays, b.weekdays)
        and (not a.names or not b.names or bool(a.names & b.names))
    )
