"""Reading deploy/: the generator, the manifests as YAML documents, the vendored CRD
schemas (tests/schemas/, written from the KEDA and NACK CRDs: nothing downloads at test
time)."""

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
SCHEMAS = ROOT / "tests" / "schemas"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor the manifests promise to work on
KUBECTL = Path("/usr/bin/kubectl")
BUILT_IN = {"Deployment", "PodDisruptionBudget", "Job", "CronJob", "ConfigMap", "Secret"}
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.v1alpha1.json",
    ("jetstream.nats.io/v1beta2", "Stream"): "nack-stream.v1beta2.json",
    ("jetstream.nats.io/v1beta2", "Consumer"): "nack-consumer.v1beta2.json",
    ("jetstream.nats.io/v1beta2", "Account"): "nack-account.v1beta2.json",
    ("jetstream.nats.io/v1beta2", "ObjectStore"): "nack-objectstore.v1beta2.json",
}

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
    name = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    return None if name is None else dict(json.loads((SCHEMAS / name).read_text()))


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
