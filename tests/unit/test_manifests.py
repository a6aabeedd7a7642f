"""deploy/: the generated files are current, every manifest validates (built-in kinds with
kubernetes-validate, KEDA and NACK kinds with their CRD schemas), and every worker of the
catalog is deployed the way docs/operations.md says: its own command, port, probes,
Secrets, consumers and scaling."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from services.catalog import SERVICES, create_worker
from services.runtime.bus import DLQ, STREAMS
from services.runtime.dlq import BODY_BUCKET
from tests.unit.deploy_files import (
    BUILT_IN,
    CRD_SCHEMAS,
    DEPLOY,
    K8S,
    KUBECTL,
    KUBERNETES_VERSION,
    ROOT,
    SCHEMAS,
    Doc,
    all_docs,
    by_kind,
    crd_schema,
    generator,
    kustomize,
    strict,
)


def validate(doc: Doc) -> None:
    """Raise unless ``doc`` is a valid object of its kind."""
    schema = crd_schema(doc)
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(doc)
    elif doc["kind"] in BUILT_IN:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    else:
        raise AssertionError(f"no schema to validate {doc['apiVersion']} {doc['kind']}")


def test_generated_files_are_current() -> None:
    for relative, text in generator().render().items():
        path = DEPLOY / relative
        assert path.exists(), f"deploy/{relative} missing: run python deploy/generate.py"
        assert path.read_text() == text, f"deploy/{relative} differs: run deploy/generate.py"


def test_nats_json_says_what_the_workers_create() -> None:
    """Compared with the consumers real workers build (create_worker), not with the
    generator: all 18, none twice, nothing else."""
    written = json.loads((DEPLOY / "nats" / "consumers.json").read_text())
    expected = {}
    for spec in SERVICES:
        _, worker = create_worker(spec.name)
        for item in worker.assembly.consumes:
            config = worker.spec_for(item.stream, item.subjects).config().as_dict()
            expected[(item.stream.name, config["durable_name"])] = config
    got = {(entry["stream"], entry["config"]["durable_name"]): entry["config"] for entry in written}
    assert len(got) == len(written) == len(expected) == 18
    assert got == expected
    assert all("backoff" not in config for config in got.values())  # it replaces ack_wait

    streams = {s["name"]: s for s in json.loads((DEPLOY / "nats" / "streams.json").read_text())}
    assert set(streams) == {stream.name for stream in STREAMS}
    for stream in STREAMS:
        declared = stream.config().as_dict()
        declared.pop("num_replicas")
        assert streams[stream.name] == declared


def test_every_manifest_validates() -> None:
    docs = all_docs()
    assert len(docs) > 40
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("Stream", ("spec", "storage"), "disk"),
        ("ObjectStore", ("spec", "ttl"), 30),
        ("Consumer", ("spec", "ackPolicy"), "explicitly"),
        ("Consumer", ("spec", "maxAckPendin"), 5),
        ("ScaledObject", ("spec", "triggers"), []),
        ("ScaledObject", ("spec", "minReplicas"), 1),
        ("Deployment", ("spec", "replica"), 1),
        ("Deployment", ("spec", "template", "spec", "containers"), [{"image": "x"}]),
        ("Secret", ("stringData",), ["not", "a", "map"]),
        ("PodMonitor", ("spec", "podMetricEndpoints"), []),
        ("PodMonitor", ("spec", "podMetricsEndpoints"), [{"port": 9100}]),
        ("PodMonitor", ("spec", "selector", "matchLabel"), {"a": "b"}),
    ],
)
def test_validation_catches_mistakes(kind: str, path: tuple[str, ...], bad: object) -> None:
    doc = copy.deepcopy(next(d for d in all_docs() if d["kind"] == kind))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate(doc)


def test_nack_resources_match_the_bus() -> None:
    docs = all_docs()
    streams = {d["spec"]["name"]: d["spec"] for d in by_kind(docs, "Stream").values()}
    for stream in STREAMS:
        assert streams[stream.name]["subjects"] == list(stream.subjects)
        assert streams[stream.name]["storage"] == "file"
    consumers = {
        (d["spec"]["streamName"], d["spec"]["durableName"]): d["spec"]
        for d in by_kind(docs, "Consumer").values()
    }
    written = json.loads((DEPLOY / "nats" / "consumers.json").read_text())
    assert len(consumers) == len(written) == 18
    for entry in written:
        spec = consumers[(entry["stream"], entry["config"]["durable_name"])]
        assert spec["ackPolicy"] == "explicit"
        assert spec["filterSubjects"] == entry["config"]["filter_subjects"]
        assert spec["maxDeliver"] == entry["config"]["max_deliver"]
        assert spec["maxAckPending"] == entry["config"]["max_ack_pending"]
        assert spec["ackWait"] == f"{entry['config']['ack_wait'] // 10**9}s"
    (bucket,) = by_kind(docs, "ObjectStore").values()
    assert bucket["spec"]["bucket"] == BODY_BUCKET
    assert bucket["spec"]["ttl"] == f"{int(DLQ.max_age_s) // 3600}h"  # as long as the DLQ
    accounts = by_kind(docs, "Account")
    assert {d["spec"]["account"] for d in by_kind(docs, "Stream").values()} <= set(accounts)


def test_each_worker_is_deployed_with_port_probes_and_own_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = all_docs()
    deployments, secrets = by_kind(docs, "Deployment"), by_kind(docs, "Secret")
    consumers = {
        (d["spec"]["streamName"], d["spec"]["durableName"])
        for d in by_kind(docs, "Consumer").values()
    }
    for spec in SERVICES:
        deployment = deployments[f"engram-{spec.name}"]
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["args"] == ["run", spec.name]
        env = {e["name"]: e["value"] for e in container["env"]}
        port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
        prefix = str(spec.settings.model_config["env_prefix"])
        assert env[f"{prefix}HTTP_PORT"] == str(port)
        # the worker's own settings read that variable as its port
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert spec.settings().http_port == port
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
        assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {
            "path": "/health/ready",
            "port": "metrics",
        }
        assert float(env[f"{prefix}DRAIN_TIMEOUT_S"]) < pod["spec"]["terminationGracePeriodSeconds"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert set(container["resources"]) == {"requests", "limits"}

        refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert refs == [f"engram-nats-{spec.name}", f"engram-db-{spec.name}"]
        nats_url = secrets[refs[0]]["stringData"]["NATS_URL"]
        database_url = secrets[refs[1]]["stringData"]["DATABASE_URL"]
        assert nats_url.startswith(f"nats://engram_{spec.name}:")
        assert database_url.startswith(f"postgresql://{spec.role}:")

        budget = by_kind(docs, "PodDisruptionBudget")[f"engram-{spec.name}"]
        labels = pod["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()

        scaled = by_kind(docs, "ScaledObject")[f"engram-{spec.name}"]
        assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        _, worker = create_worker(spec.name)
        # A worker whose load is queries also follows its CPU (they leave no backlog).
        lag = [t for t in scaled["spec"]["triggers"] if t["type"] != "cpu"]
        cpu = [t for t in scaled["spec"]["triggers"] if t["type"] == "cpu"]
        assert len(cpu) == (1 if spec.name == "context" else 0)
        assert all(0 < int(t["metadata"]["value"]) <= 100 for t in cpu)
        triggers = {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in lag}
        assert triggers == {(item.stream.name, spec.name) for item in worker.assembly.consumes}
        assert triggers <= consumers
        for trigger in lag:
            assert trigger["type"] == "nats-jetstream"
            # what KEDA's nats-jetstream scaler needs to find the consumer's lag
            assert {"natsServerMonitoringEndpoint", "account", "stream", "consumer"} <= set(
                trigger["metadata"]
            )
            assert int(trigger["metadata"]["lagThreshold"]) > 0
        maximum = scaled["spec"]["maxReplicaCount"]
        assert 1 <= scaled["spec"]["minReplicaCount"] <= maximum


def test_probe_paths_are_the_ones_the_worker_serves() -> None:
    served = (ROOT / "services" / "runtime" / "probes.py").read_text()
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert f'"{path}":' in served, path


def test_migrate_job_and_consolidation_cronjob() -> None:
    docs = all_docs()
    (job,) = by_kind(docs, "Job").values()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate"]
    refs = {e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e}
    assert refs == {"engram-db-migrate", "engram-nats-admin"}
    assert "ENGRAM_DB_PASSWORDS" in by_kind(docs, "Secret")["engram-db-migrate"]["stringData"]

    (cron,) = by_kind(docs, "CronJob").values()
    trigger = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "engram trigger consolidate" in " ".join(trigger["args"])
    refs = {e["secretRef"]["name"] for e in trigger["envFrom"] if "secretRef" in e}
    assert refs == {"engram-nats-producer"}  # a scheduler is a producer


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl not at /usr/bin/kubectl")
@pytest.mark.parametrize("overlay", ["base", "overlays/dev"])
def test_kustomize_build_renders_valid_objects(overlay: str) -> None:
    docs = kustomize(K8S / overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "ScaledObject", "Stream", "Consumer", "Job", "CronJob"} <= kinds
    assert len(by_kind(docs, "Deployment")) == len(list(SERVICES))
    for doc in docs:
        validate(doc)
    if overlay == "overlays/dev":
        assert {doc["metadata"].get("namespace") for doc in docs} == {"engram-dev"}
        secrets = set(by_kind(docs, "Secret"))
        named = {
            ref["secretRef"]["name"]
            for doc in docs
            if doc["kind"] in {"Deployment", "Job", "CronJob"}
            for container in _pod(doc)["spec"]["containers"]
            for ref in container.get("envFrom", [])
            if "secretRef" in ref
        }
        named |= {d["spec"]["user"]["secret"]["name"] for d in by_kind(docs, "Account").values()}
        assert named <= secrets, named - secrets
        assert all(d["spec"]["replicas"] == 1 for d in by_kind(docs, "Deployment").values())


def _pod(doc: Doc) -> Doc:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: Doc = spec["template"]
    return template


def test_no_file_is_left_out_of_the_base() -> None:
    listed = (K8S / "base" / "kustomization.yaml").read_text()
    for path in (K8S / "base").rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert str(path.relative_to(K8S / "base")) in listed, path
    assert Path(DEPLOY / "grafana" / "engram.json").exists()


def test_each_worker_is_scraped_by_a_pod_monitor() -> None:
    docs = all_docs()
    monitors = by_kind(docs, "PodMonitor")
    deployments = by_kind(docs, "Deployment")
    assert set(monitors) == {f"engram-{spec.name}" for spec in SERVICES}
    for name, monitor in monitors.items():
        pod = deployments[name]["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        [container] = pod["spec"]["containers"]
        assert endpoint["port"] in {port["name"] for port in container["ports"]}
        assert endpoint["path"] == pod["metadata"]["annotations"]["prometheus.io/path"]
    # The other workers' pods are not selected: each series is scraped once.
    for name, monitor in monitors.items():
        chosen = monitor["spec"]["selector"]["matchLabels"].items()
        picked = [d for d, dep in deployments.items()
                  if chosen <= dep["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert picked == [name]


def test_vendored_schemas_name_their_upstream_release() -> None:
    for name in CRD_SCHEMAS.values():
        source = json.loads((SCHEMAS / name).read_text())["x-engram-source"]
        assert source.startswith("https://github.com/") and "/blob/v" in source, name


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, {"a": "x"}, {"b": 1}),
        ({"type": "string", "nullable": True}, None, 1),
        ({"x-kubernetes-int-or-string": True}, "50%", 1.5),
        (
            {"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": True},
            {"anything": 1},
            "not an object",
        ),
    ],
)
def test_strict_reads_openapi_as_kubernetes_does(schema: Doc, good: object, bad: object) -> None:
    validator = jsonschema.Draft202012Validator(strict(schema))
    assert validator.is_valid(good)
    assert not validator.is_valid(bad)
