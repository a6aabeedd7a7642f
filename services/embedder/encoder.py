"""The one thread that runs the embedding model: queries before bulk work, the model
swapped between jobs when the active model changes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from services.embedder import onnx_query
from services.embedder.model import LoadedModel, NotReady, Vectors


class Encoder:
    """Runs every encode on one thread, so the model is never used by two callers at
    once and the event loop stays free (torch releases the GIL while it computes).
    Urgent work (queries) goes before bulk work (the embedding pump)."""

    URGENT, BULK = 0, 1

    def __init__(
        self, model: LoadedModel, *, query_threads: int = 0, onnx_queries: bool = False
    ) -> None:
        self.model = model
        # Threads per priority (0: leave torch's setting), switched before each job (µs).
        self._threads = {self.URGENT: query_threads, self.BULK: 0}
        self._onnx_queries = onnx_queries
        self.encoded = 0  # texts encoded so far
        self._jobs: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = (
            queue.PriorityQueue()
        )
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="embedder-encoder", daemon=True)
        self._thread.start()
        self._prepare_queries(model)

    async def encode(
        self, texts: Sequence[str], *, urgent: bool = False
    ) -> tuple[LoadedModel, Vectors]:
        """(the model used, one unit vector per text): the model loaded now."""
        result: tuple[LoadedModel, Vectors] = await self.call(
            lambda m: (m, self._encode(m, texts, urgent)), urgent=urgent
        )
        return result

    def _encode(self, model: LoadedModel, texts: Sequence[str], urgent: bool) -> Vectors:
        if urgent and self._onnx_queries:
            vectors = model.encode_query(texts)
        else:
            vectors = model.encode(texts)
        self.encoded += len(texts)
        return vectors

    def _prepare_queries(self, model: LoadedModel) -> None:
        # A bulk job on the encoder's thread (the only one using the model): until it has
        # run, queries simply use torch.
        if not self._onnx_queries or model.query_runner is not None:
            return

        def prepare() -> None:
            if model.query_runner is None:
                with model.lock:
                    model.query_runner = onnx_query.build(
                        model.model,
                        model.model.tokenizer,
                        model.max_tokens,
                        self._threads[self.URGENT] or 1,
                    )

        self._jobs.put((self.BULK, next(self._seq), prepare))

    async def call(self, fn: Callable[[LoadedModel], Any], *, urgent: bool = False) -> Any:
        if self._closed:
            raise NotReady("the encoder is closed (the worker is stopping)")
        done: Future[Any] = Future()

        def job() -> None:
            if done.set_running_or_notify_cancel():
                try:
                    if self._closed:
                        raise NotReady("the encoder is closed (the worker is stopping)")
                    done.set_result(fn(self.model))
                except BaseException as exc:
                    done.set_exception(exc)

        self._jobs.put((self.URGENT if urgent else self.BULK, next(self._seq), job))
        return await asyncio.wrap_future(done)

    async def swap(self, model: LoadedModel) -> None:
        """Use ``model`` from the next job on (jobs already running finish on the old)."""

        def change(_: LoadedModel) -> None:
            self.model = model

        await self.call(change, urgent=True)
        self._prepare_queries(model)

    def close(self) -> None:
        """Stop the thread after the job running now; jobs still queued fail (NotReady)."""
        self._closed = True
        self._jobs.put((99, next(self._seq), None))
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import torch

        # torch's thread count is the process's: a job that changes it puts it back, so
        # it is torch's default between jobs (and for the next encoder of this process).
        default = torch.get_num_threads()
        while True:
            priority, _, job = self._jobs.get()
            if job is None:
                return
            wanted = self._threads.get(priority) or default
            if wanted != default:
                torch.set_num_threads(wanted)
            try:
                with contextlib.suppress(Exception):
                    job()
            finally:
                if wanted != default:
                    torch.set_num_threads(default)
