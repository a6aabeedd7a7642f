"""Settings shared by every worker. Each service subclasses ``WorkerSettings`` with its
own env prefix; this module and those subclasses are the only readers of the environment."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.db import Roles

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/engram"


class WorkerSettings(BaseSettings):
    """What every worker needs: where the bus and the database are, and how it consumes."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "runtime"
    # Services that read or write pgvector columns register its codecs on each connection.
    uses_vectors: ClassVar[bool] = False
    # Whether two batches may commit at once: their effects must not depend on which
    # commits first (a dependent event that finds nothing yet is retried, as when it
    # arrives out of order). Services that apply events in stream order keep this False.
    batches_commute: ClassVar[bool] = False

    # Unprefixed on purpose: one worker pod, one NATS_URL and one DATABASE_URL (which logs
    # in as the service's own role, engram_<service>: a worker refuses a login that
    # bypasses row-level security), the same names the CLI and compose file use. NATS_URL
    # may name every server of a cluster, comma-separated (nats_servers.py).
    nats_url: str = Field(default=DEFAULT_NATS_URL, validation_alias="NATS_URL")
    nats_randomize: bool = Field(
        default=True,
        description="Connect (and fail over) to the servers of NATS_URL in random order, "
        "which spreads a service's replicas over a cluster; false: in the given order "
        "(e.g. the nearest first).",
    )
    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")

    batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most messages pulled and committed in one transaction.",
    )
    fetch_wait_s: float = Field(
        default=2.0,
        gt=0,
        description="How long an idle pull request lingers; shutdown lets it finish, so keep "
        "it well under drain_timeout_s.",
    )
    fetch_linger_s: float = Field(
        default=0.0,
        ge=0,
        description="Once a batch has its first message, wait up to this long for it to "
        "fill: fewer, bigger transactions when events trickle in, at this much latency. "
        "0 commits what has arrived.",
    )
    commits_in_flight: int = Field(
        default=1,
        ge=1,
        le=4,
        description="Batches committing at once. Above 1 only for services whose batches "
        "commute (ingest); the others apply events in stream order.",
    )
    max_deliver: int = Field(
        default=10, ge=2, description="Deliveries before a message goes to the DLQ."
    )
    ack_wait_s: float = Field(
        default=30.0, gt=0, description="Server redelivers an unacked message after this."
    )
    max_ack_pending: int = Field(default=5_000, ge=1)
    retry_base_s: float = Field(
        default=0.5, gt=0, description="First nak delay; doubles each delivery."
    )
    retry_max_s: float = Field(default=30.0, gt=0, description="Largest nak delay.")
    database_probe_max_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest pause between two probes of an unreachable database: a held "
        "batch is applied at most this long after the database is back.",
    )
    pool_min: int = Field(default=1, ge=1)
    pool_max: int = Field(default=4, ge=1)
    drain_timeout_s: float = Field(
        default=20.0, gt=0, description="How long shutdown waits for in-flight work."
    )
    nats_max_reconnect_attempts: int = Field(
        default=-1,
        ge=-1,
        description="Reconnects to NATS before the connection is given up for good, which "
        "ends the worker's process (exit code 75) so that its supervisor restarts it; -1 "
        "reconnects forever.",
    )
    connect_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="`engram run`: how long the worker tries NATS and PostgreSQL at start "
        "before it exits with one line (exit code 75) rather than waiting.",
    )
    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the worker's metrics (/metrics) and health probes "
        "(/health/live, /health/ready); unset: none served; 0: a free port.",
    )
    http_host: str = Field(
        default="0.0.0.0",  # a pod's probes and scrapes come from outside it
        description="Address the metrics and probes port listens on.",
    )
    query_queue: str = Field(
        default="",
        description="Queue group of the worker's queries (replicas share them); empty: "
        "the service's name.",
    )
    outbox_poll_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the outbox drain looks for unpublished events when no "
        "NOTIFY woke it (a missed notification only delays them).",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector the worker sends its traces to: a base URL "
        "(http://otel-collector:4318; spans go to its /v1/traces) or a URL ending in "
        "/v1/traces. Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then "
        "OTEL_EXPORTER_OTLP_ENDPOINT; with none of them, nothing is traced.",
    )
    otlp_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of traces started by this worker (events that arrive without a "
        "traceparent) that are recorded; one that arrives with one follows its producer's "
        "choice.",
    )
    # The collector is per process; in `engram dev` (several workers in one process) the
    # worker started last sets it. See services/runtime/gctune.py for why.
    gc_freeze: bool = Field(
        default=True,
        description="Once started, keep everything allocated so far out of later garbage "
        "collections (gc.freeze).",
    )
    gc_young_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Allocations between collections of the young generation (Python: "
        "700); 0 keeps Python's thresholds.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.drain_timeout_s <= self.fetch_wait_s:
            raise ValueError("drain_timeout_s must be longer than fetch_wait_s")
        if self.commits_in_flight > 1 and not self.batches_commute:
            raise ValueError(
                f"the {self.service} service applies events in stream order: "
                "commits_in_flight must be 1"
            )
        return self

    @property
    def traces_endpoint(self) -> str | None:
        """The URL spans are posted to, or None when tracing is off."""
        otel = OtelSettings()
        if otel.sdk_disabled:
            return None
        if self.otlp_endpoint:
            return traces_url(self.otlp_endpoint)
        if otel.traces_endpoint:
            return otel.traces_endpoint  # the signal's own variable is a full URL
        return traces_url(otel.endpoint) if otel.endpoint else None

    @property
    def queue_group(self) -> str:
        return self.query_queue or self.service

    @property
    def roles(self) -> Roles:
        return Roles(self.service)


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP's rule for a base endpoint: traces go to ``<base>/v1/traces``."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


class OtelSettings(BaseSettings):
    """OpenTelemetry's standard variables, unprefixed (one set per pod), read as the
    fallback of a worker's own ``otlp_endpoint``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")


class BusSettings(BaseSettings):
    """What the bus setup (`engram migrate`, `engram dev`: an admin's step) reads."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", extra="ignore")

    stream_replicas: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="Copies of each stream (and of the dead-letter body bucket) in a "
        "JetStream cluster: 3 survives the loss of any one server (ENGRAM_STREAM_REPLICAS). "
        "More than 1 needs a cluster of at least that many servers. Unset: a new stream "
        "gets 1 and an existing one keeps its count, so a setup run without it never "
        "scales a cluster's streams down.",
    )


class NatsTlsSettings(BaseSettings):
    """TLS to NATS, for every client of engram (workers and CLI): a ``tls://`` NATS_URL
    verifies the server against the system's authorities unless NATS_CA_FILE names the
    one that signed it (e.g. a private or self-signed CA); NATS_CERT_FILE and
    NATS_KEY_FILE give a client certificate when the server asks for one (mutual TLS).
    Unprefixed, like NATS_URL: one set per pod."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    ca_file: Path | None = Field(default=None, validation_alias="NATS_CA_FILE")
    cert_file: Path | None = Field(default=None, validation_alias="NATS_CERT_FILE")
    key_file: Path | None = Field(default=None, validation_alias="NATS_KEY_FILE")

    def context(self) -> ssl.SSLContext | None:
        """The client's TLS context, or None to leave it to the URL's scheme."""
        if self.ca_file is None and self.cert_file is None:
            return None
        context = ssl.create_default_context(
            cafile=None if self.ca_file is None else str(self.ca_file)
        )
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class CliSettings(BaseSettings):
    """What the CLI reads: the two URLs, and where `engram dev` keeps its data."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_", extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias=AliasChoices("NATS_URL"))
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    data_dir: str | None = Field(default=None, description="Data folder of `engram dev`.")
    connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long a command tries to reach NATS or PostgreSQL before it fails "
        "with one line (ENGRAM_CONNECT_TIMEOUT_S).",
    )
    db_passwords: dict[str, str] = Field(
        default_factory=dict,
        description="JSON, by service: the password `engram migrate` gives each worker's "
        'login role, e.g. {"ingest": "..."} (ENGRAM_DB_PASSWORDS). Roles not named keep '
        "theirs (none: log in by your server's other means, e.g. certificates).",
    )
    nats_passwords: dict[str, str] = Field(
        default_factory=dict,
        description="JSON, by NATS user (admin, producer, each service): the passwords "
        "`engram nats-config` puts in the nats-server config (ENGRAM_NATS_PASSWORDS).",
    )
