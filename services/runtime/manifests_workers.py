"""Kubernetes manifests of one worker (Deployment, PodDisruptionBudget) and the example
Secrets of every workload, built from the service catalog.

Generated rather than written by hand so that what must agree does: the env prefix of the
metrics port (``<SERVICE>_HTTP_PORT``) is the service's settings prefix, the probes hit
the paths ``probes.py`` serves, and every Secret a workload names exists in the example.
``deploy/generate.py`` holds the per-service sizes (``WorkerProfile``) and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.runtime.manifests import LABELS, Manifest, resource_name
from services.runtime.spec import ServiceSpec

METRICS_PORT = 9100
IMAGE = "engram:0.1.0"  # kustomize `images:` (name `engram`) retags it
NATS_HOST = "nats.nats.svc.cluster.local:4222"
POSTGRES_HOST = "postgres:5432"
RUN_AS = 10001  # the Dockerfile's `engram` user


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def manifest(self) -> Manifest:
        # keywords, not string keys: "memory" is also a service's name, which the runtime
        # may not spell (tests/unit/test_platform.py)
        return {
            "requests": dict(cpu=self.cpu_request, memory=self.memory_request),
            "limits": dict(cpu=self.cpu_limit, memory=self.memory_limit),
        }


@dataclass(frozen=True)
class WorkerProfile:
    """How one worker is sized and started in the base manifests."""

    resources: Resources
    replicas: int = 2
    # settings suffix -> value, set in the container (e.g. POOL_MAX); shown because they
    # must agree with the resources and the scaling around them
    settings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # unprefixed variables
    # startup probe: failures x 2 s before the kubelet restarts a worker still starting
    # (the embedder loads its model first)
    startup_failures: int = 60
    drain_timeout_s: int = 20
    termination_grace_s: int = 30


def env_prefix(spec: ServiceSpec) -> str:
    prefix = spec.settings.model_config.get("env_prefix")
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"{spec.name}'s settings have no env prefix")
    return prefix


def component_labels(component: str) -> dict[str, str]:
    return {**LABELS, "app.kubernetes.io/component": component}


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "engram", "app.kubernetes.io/component": component}


def pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _probe(path: str, period_s: int, failures: int, timeout_s: int = 5) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failures,
    }


def deployment(spec: ServiceSpec, profile: WorkerProfile) -> Manifest:
    name = resource_name("engram", spec.name)
    prefix = env_prefix(spec)
    settings = {
        "HTTP_PORT": str(METRICS_PORT),
        # below terminationGracePeriodSeconds: the drain ends before a SIGKILL
        "DRAIN_TIMEOUT_S": str(profile.drain_timeout_s),
        **profile.settings,
    }
    env: list[dict[str, Any]] = [
        {"name": prefix + key, "value": value} for key, value in settings.items()
    ]
    env += [{"name": key, "value": value} for key, value in profile.env.items()]
    container = {
        "name": spec.name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", spec.name],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "envFrom": [
            {"configMapRef": {"name": "engram"}},
            {"secretRef": {"name": resource_name("engram-nats", spec.name)}},  # NATS_URL
            {"secretRef": {"name": resource_name("engram-db", spec.name)}},  # DATABASE_URL
        ],
        "env": env,
        "startupProbe": _probe("/health/live", 2, profile.startup_failures, timeout_s=2),
        "livenessProbe": _probe("/health/live", 10, 3),
        "readinessProbe": _probe("/health/ready", 10, 2),
        "resources": profile.resources.manifest(),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = {
        "metadata": {
            "labels": component_labels(spec.name),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": profile.termination_grace_s,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(),
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector(spec.name)},
                }
            ],
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": component_labels(spec.name)},
        "spec": {
            # A starting point: once the ScaledObject exists, its HPA owns the count.
            "replicas": profile.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(spec.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": pod,
        },
    }


def disruption_budget(spec: ServiceSpec) -> Manifest:
    """At most one replica evicted at a time; a lone replica may still be drained (its
    messages wait in the stream), so a node drain never blocks on engram."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": resource_name("engram", spec.name),
            "labels": component_labels(spec.name),
        },
        "spec": {
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": selector(spec.name)},
        },
    }


def pod_monitor(spec: ServiceSpec) -> Manifest:
    """prometheus-operator's scrape of the worker's pods: the port named ``metrics``.
    A PodMonitor rather than a ServiceMonitor: a worker has no Service (it answers on NATS,
    not HTTP), and one would exist only to be scraped. No relabelling: every series
    carries its ``service`` label already (metrics.py), which the dashboard reads."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": resource_name("engram", spec.name),
            "labels": component_labels(spec.name),
        },
        "spec": {
            "selector": {"matchLabels": selector(spec.name)},
            "podMetricsEndpoints": [
                {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
            ],
        },
    }


def secret(name: str, component: str, data: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": component_labels(component)},
        "type": "Opaque",
        "stringData": data,
    }


def nats_url(user: str, password: str) -> str:
    return f"nats://engram_{user}:{password}@{NATS_HOST}"


def database_url(login: str, password: str) -> str:
    return f"postgresql://{login}:{password}@{POSTGRES_HOST}/engram?sslmode=prefer"


def example_secrets(specs: list[ServiceSpec], password: str) -> list[Manifest]:
    """Every Secret the base names, each workload its own logins (``password`` is a
    placeholder of 16+ URL-safe characters, as ``engram nats-config`` requires)."""
    found: list[Manifest] = []
    for spec in specs:
        found.append(
            secret(
                resource_name("engram-db", spec.name),
                spec.name,
                {"DATABASE_URL": database_url(spec.role, password)},
            )
        )
        found.append(
            secret(
                resource_name("engram-nats", spec.name),
                spec.name,
                {"NATS_URL": nats_url(spec.name, password)},
            )
        )
    found += [
        secret(
            "engram-db-migrate",
            "migrate",
            {
                "DATABASE_URL": database_url("postgres", password),
                "ENGRAM_DB_PASSWORDS": "{"
                + ", ".join(f'"{spec.name}": "{password}"' for spec in specs)
                + "}",
            },
        ),
        secret("engram-nats-admin", "migrate", {"NATS_URL": nats_url("admin", password)}),
        secret("engram-nats-producer", "producer", {"NATS_URL": nats_url("producer", password)}),
        # The NACK controller logs in as the NATS admin (an Account's user secret).
        secret("engram-nats-nack", "nack", {"user": "engram_admin", "password": password}),
    ]
    return found
