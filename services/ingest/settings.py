from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import WorkerSettings


class IngestSettings(WorkerSettings):
    """Env prefix INGEST_ (e.g. INGEST_BATCH_SIZE); NATS_URL and DATABASE_URL are shared."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "ingest"
