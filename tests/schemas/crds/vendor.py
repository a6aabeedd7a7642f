#!/usr/bin/env python
"""Write the CRD schemas the manifests' custom resources are validated against, from the
upstream CRD files at the tags in SOURCES (run from a checkout of each; see README.md):

    python tests/schemas/crds/vendor.py KEDA_CHECKOUT NACK_CHECKOUT PROMETHEUS_OPERATOR_CHECKOUT

Each output file is the ``openAPIV3Schema`` of one served version of one CRD, as upstream
wrote it (JSON, keys sorted), with a ``x-engram-source`` note of where it came from. The
tests turn it into a strict JSON Schema (tests/unit/deploy_files.py, ``strict``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
# repository, tag, commit, CRD file, the kinds taken from it
SOURCES = (
    (
        "kedacore/keda", "v2.20.1", "875675ce5cd1d34772fe00a228a71b8bf05b3b43",
        "config/crd/bases/keda.sh_scaledobjects.yaml", ("ScaledObject",),
    ),
    (
        "nats-io/nack", "v0.22.4", "c2b96253887c0c24a9072e54a181060ae11170df",
        "deploy/crds.yml", ("Stream", "Consumer", "Account", "ObjectStore"),
    ),
    (
        "prometheus-operator/prometheus-operator", "v0.93.0",
        "f8fafd475f3d132e239432ae6172de60a6cb6516",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        ("ServiceMonitor",),
    ),
    (
        "prometheus-operator/prometheus-operator", "v0.93.0",
        "f8fafd475f3d132e239432ae6172de60a6cb6516",
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        ("PodMonitor",),
    ),
)  # fmt: skip


def file_name(group: str, version: str, kind: str) -> str:
    return f"{group}_{version}_{kind.lower()}.json"


def main(checkouts: list[str]) -> None:
    where = dict(zip(("kedacore/keda", "nats-io/nack", "prometheus-operator/prometheus-operator"),
                     checkouts, strict=True))  # fmt: skip
    for repo, tag, commit, path, kinds in SOURCES:
        text = subprocess.run(
            ["git", "-C", where[repo], "show", f"{commit}:{path}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        for crd in (d for d in yaml.safe_load_all(text) if d):
            kind, group = crd["spec"]["names"]["kind"], crd["spec"]["group"]
            if kind not in kinds:
                continue
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                schema = dict(version["schema"]["openAPIV3Schema"])
                schema["x-engram-source"] = (
                    f"https://github.com/{repo}/blob/{tag}/{path} ({commit})"
                )
                out = HERE / file_name(group, version["name"], kind)
                out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"wrote {out.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
