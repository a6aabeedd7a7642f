"""A worker's consumers drain at once at stop (``consumer.stop_all``): the stop takes the
slowest drain, not the sum, and one failing drain keeps none of the others from draining."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from services.runtime.consumer import PullConsumer, stop_all

DRAIN_S = 0.4  # each consumer's open pull request left to finish


@dataclass
class Stream:
    name: str


@dataclass
class Spec:
    stream: Stream


@dataclass
class Draining:
    """What stop_all uses of a PullConsumer: its spec, and a stop that takes its time."""

    name: str
    fails: bool = False
    stopped: list[str] = field(default_factory=list)

    @property
    def spec(self) -> Spec:
        return Spec(Stream(self.name))

    async def stop(self) -> None:
        await asyncio.sleep(DRAIN_S)
        if self.fails:
            raise RuntimeError("the connection went away")
        self.stopped.append(self.name)


def consumers(*items: Draining) -> list[PullConsumer]:
    return cast("list[PullConsumer]", list(items))


async def test_four_drains_take_the_time_of_one() -> None:
    done: list[str] = []
    streams = ("CHAT", "MEMORY", "STATE", "ENGRAM")
    began = time.monotonic()
    await stop_all(consumers(*(Draining(s, stopped=done) for s in streams)), "audit")
    took = time.monotonic() - began
    assert sorted(done) == sorted(streams)
    assert took < 2 * DRAIN_S, f"{took:.2f} s: drained one after another"


async def test_a_failing_drain_is_logged_and_the_others_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []
    items: list[Any] = [Draining("CHAT", stopped=done), Draining("MEMORY", fails=True)]
    items.append(Draining("STATE", stopped=done))
    with caplog.at_level(logging.ERROR, logger="engram.consumer"):
        await stop_all(consumers(*items), "audit")
    assert sorted(done) == ["CHAT", "STATE"]
    assert "audit: draining MEMORY failed" in caplog.text
    assert "the connection went away" in caplog.text
