"""The bus as deployable manifests, derived from the code that declares it.

``bus.py`` declares the streams and each worker builds its durable consumers from its
service's spec and settings (``Worker.spec_for``). This module serializes the same
objects, so the files in ``deploy/`` cannot drift from what the workers do:

- the JetStream API JSON that ``nats stream add --config`` / ``nats consumer add
  --config`` read (``deploy/nats/``);
- NACK resources (``jetstream.nats.io/v1beta2`` Stream and Consumer) for GitOps;
- KEDA ScaledObjects with one ``nats-jetstream`` trigger per durable consumer of a worker.

Consumers are built from each service's settings *defaults* (``model_construct``): the
environment of whoever runs the generator must not leak into committed files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.runtime.bus import DLQ, STREAMS, ConsumerSpec, Stream
from services.runtime.dlq import BODY_BUCKET
from services.runtime.settings import WorkerSettings
from services.runtime.spec import Catalog, ServiceSpec
from services.runtime.worker import Worker

Manifest = dict[str, Any]
NACK_API = "jetstream.nats.io/v1beta2"
KEDA_API = "keda.sh/v1alpha1"
# The NACK Account every Stream and Consumer names: how the controller logs in (as the
# NATS admin, the one user allowed to manage streams; docs/security.md).
NACK_ACCOUNT = "engram-admin"
LABELS = {"app.kubernetes.io/name": "engram", "app.kubernetes.io/part-of": "engram"}


@dataclass(frozen=True)
class Durable:
    """One durable consumer of one service, as its worker creates it."""

    service: str
    spec: ConsumerSpec


def default_settings(spec: ServiceSpec) -> WorkerSettings:
    """The service's settings at their defaults, whatever the environment says."""
    return spec.settings.model_construct()


def durables_of(spec: ServiceSpec) -> list[Durable]:
    """Every durable consumer a worker of ``spec`` binds, built as the worker builds them."""
    settings = default_settings(spec)
    assembly = spec.assembly(settings)
    worker = Worker(settings, assembly, spec.outbox)
    return [
        Durable(spec.name, worker.spec_for(item.stream, item.subjects))
        for item in assembly.consumes
    ]


def all_durables(catalog: Catalog) -> list[Durable]:
    return [durable for spec in catalog for durable in durables_of(spec)]


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.ParseDuration`` reads it (NACK's format): ``168h``."""
    whole = int(seconds)
    if whole != seconds or whole <= 0:
        raise ValueError(f"durations here are whole positive seconds, not {seconds}")
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


# JetStream API JSON (deploy/nats/*.json) ---------------------------------------------------


def stream_json(stream: Stream) -> Manifest:
    """The stream's config in the JetStream API format (nats-py's own serialization,
    durations in nanoseconds), without ``num_replicas``: ``ENGRAM_STREAM_REPLICAS``
    decides that where the bus is set up (docs/operations.md)."""
    config: Manifest = stream.config().as_dict()
    config.pop("num_replicas", None)
    return config


def consumer_json(durable: Durable) -> Manifest:
    return {"stream": durable.spec.stream.name, "config": durable.spec.config().as_dict()}


# NACK (jetstream.nats.io/v1beta2) -------------------------------------------------------


def resource_name(*parts: str) -> str:
    """A Kubernetes object name (DNS-1123: lower case, digits, '-')."""
    return "-".join(part.lower() for part in parts)


def nack_stream(stream: Stream) -> Manifest:
    return {
        "apiVersion": NACK_API,
        "kind": "Stream",
        "metadata": {"name": resource_name("engram", stream.name), "labels": dict(LABELS)},
        "spec": {
            "name": stream.name,
            "subjects": list(stream.subjects),
            "storage": "file",  # NACK's default is memory: always say it
            "retention": "limits",
            "discard": "old",
            "maxAge": go_duration(stream.max_age_s),
            "duplicateWindow": go_duration(stream.duplicate_window_s),
            "allowDirect": True,
            "replicas": 1,  # 3 on a JetStream cluster: the dev overlay keeps 1, see README
            # Deleting the resource (a rename, a pruning GitOps sync) must not delete the
            # stream with a week of events in it.
            "preventDelete": True,
            "account": NACK_ACCOUNT,
        },
    }


def nack_consumer(durable: Durable) -> Manifest:
    spec = durable.spec
    return {
        "apiVersion": NACK_API,
        "kind": "Consumer",
        "metadata": {
            "name": resource_name("engram", spec.stream.name, spec.durable),
            "labels": {**LABELS, "app.kubernetes.io/component": durable.service},
        },
        "spec": {
            "streamName": spec.stream.name,
            "durableName": spec.durable,
            "description": spec.config().description,
            "deliverPolicy": "all",
            "ackPolicy": "explicit",  # NACK's default is none: always say it
            "ackWait": go_duration(spec.ack_wait_s),
            "maxDeliver": spec.max_deliver,
            "maxAckPending": spec.max_ack_pending,
            "filterSubjects": list(spec.filter_subjects),
            "replayPolicy": "instant",
            "account": NACK_ACCOUNT,
        },
    }


def nack_body_bucket() -> Manifest:
    """The object store of dead-letter bodies too big for one DLQ message (``dlq.py``):
    kept as long as the DLQ stream keeps the messages that point at them."""
    return {
        "apiVersion": NACK_API,
        "kind": "ObjectStore",
        "metadata": {"name": BODY_BUCKET, "labels": dict(LABELS)},
        "spec": {
            "bucket": BODY_BUCKET,
            "description": "bodies of dead letters too big for one DLQ message",
            "ttl": go_duration(DLQ.max_age_s),
            "storage": "file",
            "replicas": 1,
            "preventDelete": True,
            "account": NACK_ACCOUNT,
        },
    }


def nack_manifests(catalog: Catalog) -> Iterator[Manifest]:
    yield from (nack_stream(stream) for stream in STREAMS)
    yield nack_body_bucket()
    yield from (nack_consumer(durable) for durable in all_durables(catalog))


# KEDA --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """How KEDA sizes one worker's Deployment on its consumers' lag."""

    min_replicas: int = 1
    max_replicas: int = 4
    lag_threshold: int = 1000  # pending + unacked messages per replica KEDA aims at
    # host:port of NATS's monitoring port as the KEDA operator (another namespace) reaches it
    monitoring_endpoint: str = "nats.nats.svc.cluster.local:8222"
    account: str = "$G"  # NATS's default account: engram's users live in it
    # Also scale on CPU use (percent of the request): for workers whose load is queries,
    # which leave no backlog. A worker with no consumer scales on CPU (70) regardless.
    cpu_percent: int | None = None


def scaled_object(service: str, durables: list[Durable], scaling: Scaling) -> Manifest:
    """One trigger per durable consumer: the HPA follows the largest backlog of them (and
    the CPU use, when asked or when there is no consumer)."""
    triggers: list[Manifest] = [
        {
            "type": "nats-jetstream",
            "name": resource_name(d.spec.stream.name, d.spec.durable),
            "metadata": {
                "natsServerMonitoringEndpoint": scaling.monitoring_endpoint,
                "account": scaling.account,
                "stream": d.spec.stream.name,
                "consumer": d.spec.durable,
                "lagThreshold": str(scaling.lag_threshold),
                "useHttps": "false",
            },
        }
        for d in durables
    ]
    if scaling.cpu_percent is not None or not durables:
        triggers.append(
            {
                "type": "cpu",
                "metricType": "Utilization",
                "metadata": {"value": str(scaling.cpu_percent or 70)},
            }
        )
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": {
            "name": resource_name("engram", service),
            "labels": {**LABELS, "app.kubernetes.io/component": service},
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": resource_name("engram", service),
            },
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        # One replica a minute at most: a drained replica's unacked batch
                        # is redelivered after ack_wait, so shrinking fast only adds churn.
                        "scaleDown": {
                            "stabilizationWindowSeconds": 300,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        }
                    }
                }
            },
            "triggers": triggers,
        },
    }
