"""engram's MCP server without a bus: its configuration, the tools it offers and their
schemas, how failures become engram's error model, and the commands' one-line failures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.errors import ErrorCode, QueryError
from contracts.memory_search import MemorySearchRequest
from engram_client.errors import InvalidRequest, RequestTimeout
from engram_client.mcp import McpSettings, Scope, build_server
from engram_client.mcp.errors import Refused, answer, as_query_error
from engram_client.mcp.scope import RememberedIds
from engram_client.mcp.settings import default_inbox

ENGRAM = Path(sys.executable).parent / "engram"
SCOPE = {"tenant_id": "acme", "agent_id": "travel-bot"}
STATE_TOOLS = {"state_get", "state_patch", "state_history"}


def tools(**settings: Any) -> dict[str, Any]:
    server = build_server(Scope(McpSettings(**SCOPE, **settings), client=None))  # type: ignore[arg-type]
    return {t.name: t for t in asyncio.run(server.list_tools())}


def test_scope_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_MCP_TENANT_ID", "globex")
    monkeypatch.setenv("ENGRAM_MCP_AGENT_ID", "bot")
    monkeypatch.setenv("ENGRAM_MCP_USER_ID", "u-9")
    settings = McpSettings()
    assert (settings.tenant_id, settings.agent_id, settings.user_id) == ("globex", "bot", "u-9")
    monkeypatch.delenv("ENGRAM_MCP_TENANT_ID")
    with pytest.raises(ValidationError, match="tenant_id"):
        McpSettings()
    with pytest.raises(ValidationError, match="tenant_id"):
        McpSettings(tenant_id="no spaces", agent_id="bot")


def test_the_inbox_follows_engrams_nats_user() -> None:
    assert default_inbox("nats://engram_producer:pw@h:4222") == "_INBOX_producer"
    assert default_inbox("nats://someone:pw@h:4222") == "_INBOX"
    assert default_inbox("tls://h:4222") == "_INBOX"
    given = McpSettings(**SCOPE, nats_inbox_prefix="_INBOX_x", nats_url="nats://a:1,nats://b:2")
    connection = given.connection()
    assert connection.inbox_prefix == "_INBOX_x"
    assert connection.servers == ("nats://a:1", "nats://b:2")


def test_tools_have_described_schemas_and_no_scope_arguments() -> None:
    offered = tools(user_id="u-1")
    assert set(offered) == {
        "memory_search", "memory_write", "memory_forget", "knowledge_search",
        "conversation_history", *STATE_TOOLS,
    }  # fmt: skip
    for tool in offered.values():
        properties = tool.input_schema["properties"]
        assert not {"tenant_id", "agent_id", "user_id"} & set(properties), tool.name
        assert all(p.get("description") for p in properties.values()), tool.name
    assert offered["memory_search"].output_schema["properties"]["hits"]
    assert set(tools()) == set(offered) - STATE_TOOLS  # a state belongs to a user


def test_failures_become_engrams_error_model() -> None:
    timeout = as_query_error(RequestTimeout("query.memory.search", 3, 5.0, "timeout"))
    assert timeout.code == ErrorCode.unavailable and timeout.hint
    rejected = QueryError(code=ErrorCode.not_found, message="no state")
    assert as_query_error(InvalidRequest("query.state.get", rejected)) == rejected
    with pytest.raises(ValidationError) as broken:
        MemorySearchRequest.model_validate({"tenant_id": "acme", "agent_id": "a", "text": ""})
    invalid = as_query_error(broken.value)
    assert invalid.code == ErrorCode.invalid
    assert invalid.detail and invalid.detail["errors"][0]["loc"] == ["text"]


def test_answer_is_a_tool_error_with_the_error_model() -> None:
    async def refuse() -> dict[str, Any]:
        raise Refused(ErrorCode.not_found, "not here", hint="search first")

    result = asyncio.run(answer(refuse()))
    assert result.is_error
    assert result.structured_content == {
        "status": "error", "code": "not_found", "message": "not here", "hint": "search first"
    }  # fmt: skip
    ok = asyncio.run(answer(asyncio.sleep(0, {"a": 1})))
    assert not ok.is_error and ok.structured_content == {"a": 1}


def test_remembered_ids_are_bounded_oldest_first() -> None:
    seen = RememberedIds(limit=2)
    a, b, c = uuid4(), uuid4(), uuid4()
    seen.add([a, b])
    seen.add([a])  # seen again: now the newest
    seen.add([c])
    assert seen.unknown([a, b, c]) == [b]
    seen.drop([a])
    assert seen.unknown([a, c]) == [a]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_MCP_")}
    return subprocess.run(
        list(args), env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_engram_mcp_fails_in_one_line() -> None:
    module = (sys.executable, "-m", "engram_client.mcp")
    unset = run(*module)
    assert unset.returncode == 2
    assert unset.stderr.strip().count("\n") == 0 and "ENGRAM_MCP_TENANT_ID" in unset.stderr
    refused = run(
        *module,
        ENGRAM_MCP_TENANT_ID="acme",
        ENGRAM_MCP_AGENT_ID="bot",
        ENGRAM_MCP_NATS_URL="nats://engram_producer:secret-password-123@127.0.0.1:1",
    )
    assert refused.returncode == 69
    assert refused.stderr.strip().count("\n") == 0 and "cannot reach NATS" in refused.stderr
    assert "secret-password" not in refused.stderr


@pytest.mark.skipif(not ENGRAM.exists(), reason="the engram command is not installed")
def test_engram_mcp_is_the_same_command() -> None:
    helped = run(str(ENGRAM), "mcp", "--help")
    assert helped.returncode == 0 and "usage: engram-mcp" in helped.stdout
    assert "--http" in helped.stdout and "--port" in helped.stdout
    assert run(str(ENGRAM), "mcp").returncode == 2
