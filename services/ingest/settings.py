from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import WorkerSettings


class IngestSettings(WorkerSettings):
    """Env prefix INGEST_ (e.g. INGEST_BATCH_SIZE); NATS_URL and DATABASE_URL are shared."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "ingest"
    # Inserts and counter updates commute; an edit, delete or file link whose message is
    # still in the other batch's transaction finds nothing and is retried (services/ingest/
    # handlers.py), as when it arrives before its message.
    batches_commute: ClassVar[bool] = True

    commits_in_flight: int = Field(
        default=2,
        ge=1,
        le=4,
        description="Batches committing at once: the next batch's statements run while "
        "the previous one's commit is flushed and its messages acked.",
    )
    query_pool_max: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Connections of the pool query.chat.* read with (apart from the "
        "writer's), and the requests of each subject one replica answers at once.",
    )
