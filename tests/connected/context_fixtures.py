"""Fixtures for the context service's connected tests (import ``run_context_fixture`` and
``context_fixture`` into a module to get ``run_context`` and ``context``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import uuid4

import pytest

from contracts.context_templates import (
    TemplateDeleted,
    TemplateDeletedPayload,
    TemplatePut,
    TemplatePutPayload,
)
from services.context.app import create_app
from services.context.settings import ContextSettings
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.worker_fixtures import FAST_TIMINGS, in_process, worker_settings

FAST = FAST_TIMINGS


def settings_for(env: Env, **overrides: Any) -> ContextSettings:
    return worker_settings(ContextSettings, env, FAST, **overrides)


@pytest.fixture(name="run_context")
def run_context_fixture(env: Env) -> Callable[..., AbstractAsyncContextManager[Worker]]:
    """``async with run_context(**settings) as worker``: the real worker, in-process."""
    return in_process(create_app, partial(settings_for, env))


@pytest.fixture(name="context")
async def context_fixture(
    run_context: Callable[..., AbstractAsyncContextManager[Worker]],
) -> AsyncIterator[Worker]:
    async with run_context() as worker:
        yield worker


def template_put(name: str, text: str, tenant: str, **payload: Any) -> TemplatePut:
    return TemplatePut(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant,
        producer="tests",
        payload=TemplatePutPayload(
            name=name, segments=[{"name": "persona", "text": text}], **payload
        ),
    )


def template_deleted(name: str, tenant: str) -> TemplateDeleted:
    return TemplateDeleted(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        tenant_id=tenant,
        producer="tests",
        payload=TemplateDeletedPayload(name=name),
    )
