"""Reading deploy/: the generator, the manifests as YAML documents, the vendored CRD
schemas (tests/schemas/crds/: the KEDA, NACK and prometheus-operator CRDs' own schemas at
pinned releases, README.md there; nothing downloads at test time)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = ROOT / "tests" / "schemas" / "crds"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor the manifests promise to work on
KUBECTL = Path("/usr/bin/kubectl")
BUILT_IN = {"Deployment", "PodDisruptionBudget", "Job", "CronJob", "ConfigMap", "Secret"}
# (apiVersion, kind) -> the upstream schema of that version (tests/schemas/crds/README.md)
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("jetstream.nats.io/v1beta2", "Stream"): "jetstream.nats.io_v1beta2_stream.json",
    ("jetstream.nats.io/v1beta2", "Consumer"): "jetstream.nats.io_v1beta2_consumer.json",
    ("jetstream.nats.io/v1beta2", "Account"): "jetstream.nats.io_v1beta2_account.json",
    ("jetstream.nats.io/v1beta2", "ObjectStore"): "jetstream.nats.io_v1beta2_objectstore.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_podmonitor.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
}
# Object names: DNS subdomains, as the API server requires of every custom resource.
NAME = {"type": "string", "pattern": "^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", "maxLength": 253}

Doc = dict[str, Any]


@cache
def generator() -> ModuleType:
    """deploy/generate.py, imported from its path (deploy/ is no package)."""
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_docs(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def all_docs() -> list[Doc]:
    return [doc for path in manifest_files() for doc in load_docs(path.read_text())]


def crd_schema(doc: Doc) -> Doc | None:
    """The strict JSON Schema of ``doc``'s kind, or None for a kind with no CRD here."""
    key = (doc["apiVersion"], doc["kind"])
    name = CRD_SCHEMAS.get(key)
    if name is None:
        return None
    schema = strict(json.loads((SCHEMAS / name).read_text()))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    properties = schema["properties"]
    properties["apiVersion"] = {"const": key[0]}
    properties["kind"] = {"const": key[1]}
    properties["metadata"] = {"type": "object", "required": ["name"], "properties": {"name": NAME}}
    return schema


def strict(node: Any) -> Any:
    """A CRD's OpenAPI v3 schema as JSON Schema, as strict as ``kubectl apply
    --validate=strict``: a field the schema does not declare is an error (unless the schema
    keeps unknown fields), ``nullable`` admits null, int-or-string admits either."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    keeps_unknown = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not keeps_unknown:
        out["additionalProperties"] = False
    return out


def kustomize(overlay: Path) -> list[Doc]:
    """`kubectl kustomize <dir>` rendered and parsed."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(overlay)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return load_docs(done.stdout)


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}
