"""Generating memories: distinct ones of the four types and planted paraphrases of some."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.memory_bench.frames import FRAMES, WORKING_ITEMS
from bench.memory_bench.slots import (
    CITIES,
    DATE,
    FIRST,
    LAST,
    MONTHS,
    REPORTS,
    TIME,
    Frame,
    _orders,
)

# --- generating ------------------------------------------------------------------------

T_END = datetime(2026, 11, 1, tzinfo=UTC)  # the data's "today": texts do not depend on the day run
CLOCK = T_END + timedelta(days=1)  # the consolidation jobs' clock (their occurred_at)
DIFFER = (("from", "to"), ("d1", "d2"), ("p1", "p2"))
SLOT = re.compile(r"\{(\w+)(?:\.(\w+))?\}")
JOINS = 4  # ways of listing a procedure's steps


@dataclass
class Memory:
    memory_type: str
    user_id: str | None
    frame: str
    text: str
    content: dict[str, Any]
    importance: float
    written_at: datetime
    duplicate_of: int | None = None  # a paraphrase: index of its original
    level: str = ""  # a paraphrase: how far it is reworded (LEVELS)


@dataclass
class _Drawn:
    """A memory before it is said: frame, user, slot values, and how it is said."""

    frame: Frame
    user: tuple[str, str, str] | None  # (user_id, first name, full name)
    values: dict[str, Any]
    forms: dict[str, int]  # per slot: which synonym (modulo the number of forms)
    realization: int
    join: int
    when: datetime | None


def _forms(value: Any, field_: str | None) -> list[str]:
    if isinstance(value, datetime):
        month = MONTHS[value.month - 1]
        return [
            f"{value:%Y-%m-%d}",
            f"{value.day} {month}",
            f"{month} {value.day}",
            f"{value.day} {month} {value.year}",
        ]
    if isinstance(value, dict):
        return str(value[field_ or next(iter(value))]).split("|")
    return str(value).split("|")


def _n_forms(value: Any) -> int:
    if isinstance(value, dict):
        return max(len(str(v).split("|")) for v in value.values())
    return len(_forms(value, None))


def _fill(template: str, d: _Drawn) -> str:
    def one(m: re.Match[str]) -> str:
        slot, field_ = m.group(1), m.group(2)
        forms = _forms(d.values[slot], field_)
        return forms[d.forms[slot] % len(forms)]

    return SLOT.sub(one, template)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _say(d: _Drawn) -> tuple[str, dict[str, Any]]:
    f = d.frame
    head = _cap(_fill(f.realizations[d.realization], d))
    if f.memory_type == "procedural":
        steps = [_pick(_fill(s, d), d.forms[f"_s{i}"]) for i, s in enumerate(f.steps)]
        if d.join == 0:
            body = " ".join(f"{i + 1}. {_cap(s)}." for i, s in enumerate(steps))
        elif d.join == 1:
            body = "first " + ", then ".join(steps[:-1]) + ", and finally " + steps[-1] + "."
        elif d.join == 2:
            body = " -> ".join(steps) + "."
        else:
            body = "; ".join(f"({i + 1}) {s}" for i, s in enumerate(steps)) + "."
        text = f"{head}: {body}"
        return text, {"skill": head, "steps": [_cap(s) for s in steps]}
    text = head
    if f.memory_type == "episodic":
        assert d.when is not None
        return text, {"event": text, "temporal": {"occurred_at": d.when.isoformat()}}
    concept = _fill(f.concept, replace(d, forms={k: 0 for k in d.forms}))
    if d.user is not None:
        concept = f"{d.user[2]}: {concept}"
    return text, {"concept": concept, "definition": text}


def _pick(alternatives: str, index: int) -> str:
    forms = alternatives.split("|")
    return forms[index % len(forms)]


class Generator:
    """Distinct memories of one agent and paraphrases of some of them (deterministic for
    a seed). Types by ``mix``; users ~ n/40, some with many memories, most with few."""

    def __init__(self, seed: int, mix: dict[str, float], n_users: int) -> None:
        self.rng = random.Random(seed)
        self.mix = mix
        names = [(f, f"{f} {last}") for f in FIRST for last in LAST]
        self.rng.shuffle(names)
        self.users = [(f"u-{i:05d}", f, full) for i, (f, full) in enumerate(names[:n_users])]
        self.user_weights = [1.0 / (1 + i) ** 0.6 for i in range(n_users)]
        self.by_type: dict[str, list[Frame]] = defaultdict(list)
        for fr in FRAMES:
            self.by_type[fr.memory_type].append(fr)
        self.keys: set[tuple[Any, ...]] = set()
        self.texts: set[tuple[str | None, str]] = set()

    def _draw(self, frame: Frame) -> _Drawn:
        rng = self.rng
        user = None
        if frame.scope == "user":
            user = rng.choices(self.users, self.user_weights)[0]
        values: dict[str, Any] = {}
        when = None
        for slot, options in frame.slots.items():
            if options == DATE:
                when = T_END - timedelta(
                    days=rng.randrange(1, 400),
                    hours=rng.randrange(8, 21),
                    minutes=rng.choice((0, 15, 30, 45)),
                )
                values[slot] = when
            elif options == TIME:
                values[slot] = f"{rng.randrange(7, 22):02d}:{rng.choice(('00', '15', '30', '45'))}"
            else:
                values[slot] = rng.choice(options)
        if user is not None:
            values["who"] = {
                "": f"{user[1]}|{user[2]}|the user",
                "poss": f"{user[1]}'s|{user[2]}'s|the user's",
            }
        forms = {slot: rng.randrange(12) for slot in values}
        forms.update({f"_s{i}": rng.randrange(12) for i in range(len(frame.steps))})
        if frame.memory_type == "episodic" and when is None:
            when = T_END - timedelta(days=rng.randrange(1, 400))
        return _Drawn(
            frame,
            user,
            values,
            forms,
            rng.randrange(len(frame.realizations)),
            rng.randrange(JOINS),
            when,
        )

    def _key(self, d: _Drawn) -> tuple[Any, ...]:
        slots = d.frame.single if d.frame.single is not None else tuple(d.frame.slots)
        return (d.user[0] if d.user else None, d.frame.name, *(str(d.values[s]) for s in slots))

    def distinct(self, n: int, start: int = 0) -> list[Memory]:
        out: list[Memory] = []
        types = list(self.mix)
        weights = [self.mix[t] for t in types]
        while len(out) < n:
            memory_type = self.rng.choices(types, weights)[0]
            if memory_type == "working":
                out.append(self._working())
                continue
            frames = self.by_type[memory_type]
            frame = self.rng.choices(frames, [f.weight for f in frames])[0]
            d = self._draw(frame)
            if any(a in d.values and d.values[a] == d.values[b] for a, b in DIFFER):
                continue
            key = self._key(d)
            if key in self.keys:
                continue
            memory = self._memory(d)
            if (memory.user_id, memory.text) in self.texts:
                continue
            self.keys.add(key)
            self.texts.add((memory.user_id, memory.text))
            memory.drawn = d  # type: ignore[attr-defined]
            out.append(memory)
        return out

    def _memory(self, d: _Drawn) -> Memory:
        text, content = _say(d)
        if d.when is not None:
            written = d.when + timedelta(hours=self.rng.randrange(0, 48))
        else:
            written = T_END - timedelta(
                days=self.rng.randrange(1, 300), minutes=self.rng.randrange(1440)
            )
        return Memory(
            d.frame.memory_type,
            d.user[0] if d.user else None,
            d.frame.name,
            text,
            content,
            round(self.rng.uniform(0.2, 0.9), 2),
            min(written, T_END),
        )

    def _working(self) -> Memory:
        rng = self.rng
        user = rng.choices(self.users, self.user_weights)[0]
        fill = {
            "who": user[1],
            "a": rng.choice(CITIES)[0],
            "b": rng.choice(CITIES)[0],
            "amount": rng.randrange(50, 3000, 10),
            "cur": "EUR",
            "report": _pick(rng.choice(REPORTS), 0),
            "order": rng.choice(_ORDERS),
        }
        items = [t.format(**fill) for t in rng.sample(WORKING_ITEMS, rng.randrange(2, 6))]
        return Memory(
            "working",
            user[0],
            "working",
            "Working set: " + "; ".join(items) + ".",
            {"items": items, "capacity": 8},
            round(rng.uniform(0.2, 0.9), 2),
            T_END - timedelta(hours=rng.randrange(1, 24 * 20)),
        )

    def paraphrase(self, original: Memory, index: int, level: str) -> Memory:
        """The same memory said otherwise (same type, user and facts), at one of LEVELS:
        ``synonyms``: the same sentence, other words for its slots (another way of listing
        a procedure's steps); ``restructured``: another sentence structure and clause order
        (another realization), some other synonyms; ``reworded``: another structure, other
        synonyms throughout, and the user named another way (name, full name, "the user")."""
        d0: _Drawn = original.drawn  # type: ignore[attr-defined]
        rng = self.rng
        p_syn = {"synonyms": 1.0, "restructured": 0.5, "reworded": 0.9}[level]
        text, content, d = original.text, original.content, d0
        for attempt in range(50):
            forms = {}
            for slot, i in d0.forms.items():
                n = _n_forms(d0.values[slot]) if slot in d0.values else 2
                change = rng.random() < p_syn and (slot != "who" or level == "reworded")
                forms[slot] = (i + rng.randrange(1, n)) % n if n > 1 and change else i
            realization, join = d0.realization, d0.join
            if level != "synonyms" or attempt >= 10:  # nothing to swap: restructure
                realization = rng.choice(
                    [r for r in range(len(d0.frame.realizations)) if r != d0.realization]
                )
            if level != "synonyms":  # (the way a procedure's steps are listed)
                join = rng.choice([j for j in range(JOINS) if j != d0.join])
            d = replace(d0, forms=forms, realization=realization, join=join)
            text, content = _say(d)
            if text != original.text and (original.user_id, text) not in self.texts:
                break
        self.texts.add((original.user_id, text))
        written = min(T_END, original.written_at + timedelta(days=rng.randrange(1, 30)))
        memory = Memory(
            original.memory_type,
            original.user_id,
            original.frame,
            text,
            content,
            round(rng.uniform(0.2, 0.9), 2),
            written,
            duplicate_of=index,
            level=level,
        )
        memory.drawn = d  # type: ignore[attr-defined]
        return memory


LEVELS = ("synonyms", "restructured", "reworded")
_ORDERS = _orders()
MERGED = ("episodic", "semantic", "procedural")


def memory_set(
    n_distinct: int, n_duplicates: int, mix: dict[str, float], seed: int
) -> list[Memory]:
    """n_distinct distinct memories, then n_duplicates paraphrases of as many of them
    (of the merged types), all shuffled together."""
    gen = Generator(seed, mix, n_users=max(10, n_distinct // 40))
    memories = gen.distinct(n_distinct)
    eligible = [i for i, m in enumerate(memories) if m.memory_type in MERGED]
    chosen = gen.rng.sample(eligible, n_duplicates)
    memories += [
        gen.paraphrase(memories[i], i, LEVELS[k % len(LEVELS)]) for k, i in enumerate(chosen)
    ]
    order = list(range(len(memories)))
    gen.rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        m = memories[old]
        if m.duplicate_of is not None:
            m.duplicate_of = where[m.duplicate_of]
        out.append(m)
    return out
