from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.ingest.settings import IngestSettings
from services.runtime.gctune import tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
def test_freezes_the_heap_and_raises_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    tune_gc(freeze=True, young_threshold=12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() > 1000
    tune_gc(freeze=True, young_threshold=12_345)  # a second worker in the same process
    assert gc.get_freeze_count() > 1000


@pytest.mark.usefixtures("restore_gc")
def test_zero_and_false_leave_the_collector_alone() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    tune_gc(freeze=False, young_threshold=0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INGEST_GC_FREEZE", "INGEST_GC_YOUNG_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    defaults = IngestSettings()
    assert defaults.gc_freeze is True
    assert defaults.gc_young_threshold == 50_000
    monkeypatch.setenv("INGEST_GC_FREEZE", "false")
    monkeypatch.setenv("INGEST_GC_YOUNG_THRESHOLD", "0")
    settings = IngestSettings()
    assert settings.gc_freeze is False
    assert settings.gc_young_threshold == 0
