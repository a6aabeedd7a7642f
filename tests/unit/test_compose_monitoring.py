"""docker-compose.yml and its `monitoring` profile, and the Grafana dashboard, read as
files (docker may not run here): every worker runs with its own logins and its metrics
port, Prometheus scrapes each of those ports, Grafana gets the dashboard, and every
metric the dashboard queries is one docs/operations.md documents and the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from services.catalog import SERVICES
from services.runtime.dashboard import queried_metrics
from tests.unit.deploy_files import DEPLOY, ROOT

COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def with_defaults(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def scrape_targets() -> set[str]:
    config = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    return {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }


def test_every_worker_runs_with_its_own_logins_and_port() -> None:
    services = compose()["services"]
    targets = scrape_targets()
    nats_users = json.loads(
        with_defaults(services["nats-config"]["environment"]["ENGRAM_NATS_PASSWORDS"])
    )
    db_passwords = json.loads(
        with_defaults(services["migrate"]["environment"]["ENGRAM_DB_PASSWORDS"])
    )
    for spec in SERVICES:
        worker = services[spec.name]
        assert worker["command"] == ["run", spec.name]
        env = {key: with_defaults(str(value)) for key, value in worker["environment"].items()}
        prefix = str(spec.settings.model_config["env_prefix"])
        assert f"{spec.name}:{env[f'{prefix}HTTP_PORT']}" in targets
        nats_password = nats_users[spec.name]
        assert env["NATS_URL"] == f"nats://engram_{spec.name}:{nats_password}@nats:4222"
        assert env["DATABASE_URL"].startswith(
            f"postgresql://{spec.role}:{db_passwords[spec.name]}@"
        )
        assert float(env[f"{prefix}DRAIN_TIMEOUT_S"]) < seconds(worker["stop_grace_period"])
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "profiles" not in worker  # workers start without a profile
        probe = " ".join(worker["healthcheck"]["test"])
        assert f"127.0.0.1:{env[f'{prefix}HTTP_PORT']}/health/ready" in probe
    assert len(targets) == len(list(SERVICES))


def test_monitoring_profile_mounts_files_that_exist() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), source
    mounted = [v for v in services["grafana"]["volumes"] if "engram.json" in v]
    assert mounted == ["./deploy/grafana/engram.json:/var/lib/grafana/dashboards/engram.json:ro"]
    provider = yaml.safe_load((DEPLOY / "monitoring" / "grafana" / "dashboards.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = yaml.safe_load((DEPLOY / "monitoring" / "grafana" / "datasources.yaml").read_text())
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"


def documented_metrics() -> set[str]:
    """The engram_* names of the metrics table in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `engram_")]
    return {name for row in rows for name in re.findall(r"`(engram_[a-z_]+)`", row.split("|")[1])}


def exported_in_code(metric: str) -> bool:
    """Whether a worker measures it: ``metrics.py`` prefixes ``engram_`` to a Measure's
    name, and a counter's exposition adds ``_total``."""
    stem = metric.removeprefix("engram_").removesuffix("_total")
    return any(f'"{stem}"' in path.read_text() for path in (ROOT / "services").rglob("*.py"))


def test_dashboard_queries_only_documented_exported_metrics() -> None:
    board = json.loads((DEPLOY / "grafana" / "engram.json").read_text())
    queried = queried_metrics(board)
    documented = documented_metrics()
    assert len(documented) > 15
    assert queried <= documented, queried - documented
    assert all(exported_in_code(name) for name in queried), [
        n for n in queried if not exported_in_code(n)
    ]
    assert not exported_in_code("engram_not_a_metric_total")


def test_dashboard_shows_what_operators_asked_for() -> None:
    board = json.loads((DEPLOY / "grafana" / "engram.json").read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for wanted in (
        "engram_events_applied_total",  # throughput per worker
        "engram_consumer_pending",  # lag
        "engram_events_dead_lettered_total",
        "histogram_quantile(0.5, sum by (service, le) (rate(engram_commit_seconds_bucket",
        "histogram_quantile(0.99, sum by (service, le) (rate(engram_commit_seconds_bucket",
        "engram_query_seconds_bucket",
        "engram_embed_texts_total",
    ):
        assert wanted in exprs, wanted
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] for panel in board["panels"])


def test_deploy_docs_name_files_that_exist() -> None:
    text = (DEPLOY / "README.md").read_text()
    for name in re.findall(r"`((?:k8s|nats|grafana|monitoring)/[^`*<> ]+)`", text):
        assert (DEPLOY / name).exists(), name
    assert Path(DEPLOY / "generate.py").exists()
