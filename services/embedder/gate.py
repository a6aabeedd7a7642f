"""The quality gate of a bulk runtime whose vectors are not exactly the model's (int8):
its vectors against torch fp32, on probe texts (cosines) and on a retrieval task
(recall@10 of fp32's exact top 10, on a seeded corpus of chat-like texts).

The corpus is the embedder benchmark's (``bench/corpus.py`` reads it from here): random
sentences over a 300-word chat vocabulary, so every text is near many others (the
median gap between the 10th and the 11th neighbour of a query is about 0.003 of cosine).
That makes recall@10 a strict test: a runtime that moves vectors by 1% swaps neighbours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Encode = Callable[[Sequence[str]], Vectors]
CORPUS_TEXTS, CORPUS_QUERIES = 400, 60


@dataclass(frozen=True)
class Gate:
    min_mean_cosine: float = 0.98
    min_cosine: float = 0.95
    min_recall: float = 0.97


DEFAULT_GATE = Gate()


@dataclass(frozen=True)
class Measured:
    mean_cosine: float
    min_cosine: float
    recall: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# Chat-like probes of every length the window holds: short and long, questions, code,
# numbers, other languages; the gate's cosines are taken over all of them.
PROBES: tuple[str, ...] = (
    "ok",
    "thanks!",
    "hello",
    "Find me a hotel near the river.",
    "What did the user say about the hotel near the old town last week?",
    "Can you move my 3pm meeting with Dana to Thursday morning?",
    "The deploy failed again: ImportError: cannot import name 'Engine' from 'services'.",
    "SELECT tenant_id, count(*) FROM embedder.chunks GROUP BY 1 ORDER BY 2 DESC LIMIT 10;",
    "def rrf(rankings, k=60):\n    return sorted(score(r, k) for r in rankings)",
    "Refund order #48213: the parcel arrived broken on 14 March, 129.90 EUR.",
    "Schritt 1: den Server neu starten; étape 2 : vérifier les journaux. 日本語も少し。",
    "¿Dónde está la estación de tren más cercana al aeropuerto?",
    "Summarize the quarterly revenue growth and the customer churn on the dashboard.",
    "My flight to Lisbon leaves at 06:40 from gate B12, and I still need a visa for Tokyo.",
    "Preheat the oven to 200 C, salt the pasta water, add garlic and tomato to the sauce, "
    "bake for 25 minutes and serve with basil.",
    " ".join(
        [
            "The assistant compared three hotels by price, distance to the river, reviews and "
            "breakfast, then booked the quiet one for two nights and sent the confirmation."
        ]
        * 6
    ),
    "Kubernetes pod crash loop: the readiness probe times out after 30 s because the "
    "NATS connection is refused; the consumer lag grows to 12,000 messages meanwhile.",
    "I prefer an aisle seat on flights longer than three hours and a window seat otherwise.",
    "remind me tomorrow",
    "Please write a short poem about the sea at night, in the style of a haiku.",
)


def agreement(got: Vectors, expected: Vectors) -> tuple[float, float]:
    """(mean, min) cosine of unit vectors, row by row."""
    cosines = np.sum(got * expected, axis=1)
    return float(np.mean(cosines)), float(np.min(cosines))


def recall_at_10(exact: Vectors, exact_q: Vectors, approx: Vectors, approx_q: Vectors) -> float:
    """Mean share of each query's exact top 10 (by ``exact``) that ``approx`` finds."""
    truth, found = exact @ exact_q.T, approx @ approx_q.T
    k = min(10, len(exact))
    hits = [
        len(set(np.argsort(-truth[:, q])[:k]) & set(np.argsort(-found[:, q])[:k])) / k
        for q in range(truth.shape[1])
    ]
    return float(np.mean(hits))


def measure(fp32: Encode, docs: Encode, queries: Encode) -> Measured:
    """The gate's figures of a runtime (``docs`` as bulk encodes, ``queries`` as queries
    are encoded: one at a time) against ``fp32``."""
    mean, low = agreement(docs(PROBES), fp32(PROBES))
    corpus, asked = chat_texts(CORPUS_TEXTS, seed=7), query_texts(CORPUS_QUERIES, seed=99)
    approx_q = np.concatenate([queries([q]) for q in asked])
    recall = recall_at_10(fp32(corpus), fp32(asked), docs(corpus), approx_q)
    return Measured(mean, low, recall)


def verdict(gate: Gate, m: Measured) -> str | None:
    """None if ``m`` passes ``gate``, else why not."""
    failed = [
        f"{name} {value:.4f} < {limit}"
        for name, value, limit in (
            ("mean cosine", m.mean_cosine, gate.min_mean_cosine),
            ("min cosine", m.min_cosine, gate.min_cosine),
            ("recall@10", m.recall, gate.min_recall),
        )
        if value < limit
    ]
    return "; ".join(failed) or None


VOCAB = """the a to and of in is it you that for on with this be are have i not we can at
as your from but my they what all will do so there an about would one out up when which
hotel river booking flight tomorrow morning evening price cheaper option review summary
table column query index database migration deploy release version error stack trace
function class method return value argument parameter config setting token model prompt
answer question context memory agent session conversation message file upload document
meeting schedule calendar reminder invoice payment refund order shipping delivery address
recipe ingredient oven minutes salt garlic tomato pasta sauce bake serve weekend trip
museum ticket train station airport gate luggage passport visa weather forecast rain sun
budget estimate quarter revenue growth customer churn dashboard metric latency throughput
python rust javascript typescript postgres redis kafka nats kubernetes docker container
please thanks sure great perfect exactly actually probably maybe definitely honestly
lisbon porto madrid paris berlin tokyo quiet noisy cheap expensive late early refund""".split()  # noqa: SIM905


def chat_texts(n: int, seed: int) -> list[str]:
    """Distinct chat messages: users short (median ~90 chars), assistants longer (~500),
    tools in between, as in a chat log; lognormal lengths, a few over one chunk."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        role = rng.choices(["user", "assistant", "tool"], [0.5, 0.42, 0.08])[0]
        median = {"user": 90, "assistant": 500, "tool": 250}[role]
        length = int(min(2400, max(15, rng.lognormvariate(math.log(median), 0.8))))
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < length:
            sentence = [rng.choice(VOCAB) for _ in range(rng.randint(4, 18))]
            if rng.random() < 0.15:
                sentence.append(str(rng.randint(2, 2026)))
            sentence[0] = sentence[0].capitalize()
            words += sentence
            words[-1] += rng.choice([".", ".", "?", "!"])
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def query_texts(n: int, seed: int) -> list[str]:
    """Search queries as people type them: 3 to 12 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 12))) + "?" for _ in range(n)]
