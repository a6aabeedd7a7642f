"""The MCP server as a host runs it: ``engram-mcp`` in its own process (stdio, or streamable
HTTP on a free port), configured by ENGRAM_MCP_* and logging in to NATS as engram's
upstream user ``producer``; the tests talk to it with the ``mcp`` package's own client."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from contracts.errors import QueryError
from tests.conftest import Env

AGENT, USER = "travel-bot", "u-1"


def command() -> list[str]:
    """``engram-mcp`` beside this Python when the client is installed, else the same
    entry point as a module (a checkout on PYTHONPATH)."""
    script = Path(sys.executable).with_name("engram-mcp")
    if script.exists():
        return [str(script)]
    found = shutil.which("engram-mcp")
    return [found] if found else [sys.executable, "-m", "engram_client.mcp"]


def settings_env(
    env: Env, tenant: str, *, agent: str = AGENT, user: str | None = USER
) -> dict[str, str]:
    values = {
        "ENGRAM_MCP_TENANT_ID": tenant,
        "ENGRAM_MCP_AGENT_ID": agent,
        "ENGRAM_MCP_NATS_URL": env.nats_login("producer"),
        "ENGRAM_MCP_LOG_LEVEL": "WARNING",
        # A host starts the server with few variables; a checkout run needs its path.
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    if user is not None:
        values["ENGRAM_MCP_USER_ID"] = user
    return values


@asynccontextmanager
async def stdio_session(env: Env, tenant: str, **scope: Any) -> AsyncIterator[ClientSession]:
    """A session with ``engram-mcp`` spawned over stdio, as an MCP host does."""
    cmd = command()
    params = StdioServerParameters(
        command=cmd[0], args=cmd[1:], env=settings_env(env, tenant, **scope)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(env: Env, tenant: str, **scope: Any) -> Iterator[str]:
    """``engram-mcp --http --port N`` in its own process; yields its URL."""
    port = free_port()
    environ = {**os.environ, **settings_env(env, tenant, **scope)}
    proc = subprocess.Popen([*command(), "--http", "--port", str(port)], env=environ)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"engram-mcp --http exited with {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "engram-mcp --http did not listen in 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """The tool's structured result; fails the test on a tool error."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult), result
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    """The tool error the call must give."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult), result
    assert result.is_error, result.structured_content
    return result


async def engram_error(session: ClientSession, tool: str, **arguments: Any) -> QueryError:
    """The tool error, as engram's error model: its structured content, and its text."""
    result = await call_error(session, tool, **arguments)
    error = QueryError.model_validate(result.structured_content)
    assert QueryError.model_validate(json.loads(text_of(result))) == error
    return error


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))
