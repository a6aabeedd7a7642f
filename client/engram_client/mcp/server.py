"""The MCP server: ``build_server`` registers the tools over a connected client; ``serve``
connects to the bus and runs on stdio or streamable HTTP until its client or the process
ends."""

from __future__ import annotations

import logging
from typing import Any, Literal

import nats
import nats.errors
from mcp.server.mcpserver import MCPServer

from engram_client.client import EngramClient
from engram_client.mcp import knowledge, memory, state
from engram_client.mcp.scope import Scope
from engram_client.mcp.settings import McpSettings

Transport = Literal["stdio", "http"]
log = logging.getLogger("engram_client.mcp")


class Unreachable(Exception):
    """The bus could not be reached at start (one line for the operator)."""


INSTRUCTIONS = (
    "engram: the long-term memory and state of agent {agent} (tenant {tenant}{user}). "
    "memory_search before answering from memory; memory_write what is worth keeping; "
    "state_get / state_patch for the agent's working state; knowledge_search and "
    "conversation_history for what was said. A failed call returns engram's error as JSON: "
    "code (invalid, not_found, pruned, too_large, unavailable, internal), message, hint."
)


def build_server(scope: Scope) -> MCPServer[Any]:
    """An MCP server whose tools act for ``scope``'s tenant, agent and user."""
    s = scope.settings
    server: MCPServer[Any] = MCPServer(
        "engram",
        instructions=INSTRUCTIONS.format(
            agent=s.agent_id, tenant=s.tenant_id, user=f", user {s.user_id}" if s.user_id else ""
        ),
        log_level=s.log_level,
    )
    memory.register(server, scope)
    if s.user_id is not None:
        state.register(server, scope, s.user_id)
    knowledge.register(server, scope)
    return server


async def serve(settings: McpSettings, transport: Transport) -> None:
    """Connect to the bus, then serve MCP on ``transport`` (stdio: until stdin closes)."""
    client = await connect_client(settings)
    async with client:
        server = build_server(Scope(settings, client))
        if transport == "stdio":
            await server.run_stdio_async()
            return
        import uvicorn

        app = server.streamable_http_app(
            streamable_http_path=settings.http_path, host=settings.http_host
        )
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
        )
        await uvicorn.Server(config).serve()


async def connect_client(settings: McpSettings) -> EngramClient:
    """The client, or ``Unreachable`` at once: nats-py alone retries an unreachable server
    for two minutes and prints a traceback a try. One quiet try first, then the lasting
    connection (which reconnects on its own, logging one line per error)."""
    options = settings.connection().nats_options()
    failures: list[Exception] = []

    async def remember(exc: Exception) -> None:
        failures.append(exc)

    async def warn(exc: Exception) -> None:
        log.warning("NATS: %s", exc or type(exc).__name__)

    try:
        once = {**options, "allow_reconnect": False, "max_reconnect_attempts": 1}
        probe = await nats.connect(**once, error_cb=remember)  # type: ignore[arg-type]
    except (nats.errors.Error, OSError) as exc:
        why = failures[-1] if failures else exc
        where = settings.nats_url.rsplit("@", 1)[-1]  # never the password
        raise Unreachable(f"cannot reach NATS at {where}: {why or type(why).__name__}") from None
    await probe.close()
    nc = await nats.connect(**options, error_cb=warn)  # type: ignore[arg-type]
    return EngramClient(
        nc,
        tenant_id=settings.tenant_id,
        producer=settings.producer,
        retry=settings.retry(),
        owns_connection=True,
    )
