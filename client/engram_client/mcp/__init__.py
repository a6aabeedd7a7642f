"""engram's MCP server (``pip install "engram-bus-client[mcp]"``; run ``engram-mcp``).

Tools, for the tenant, agent and user of its configuration (``McpSettings``, environment
``ENGRAM_MCP_*``; never the tools' arguments): ``memory_search``, ``memory_write``,
``memory_forget``, ``state_get``, ``state_patch``, ``state_history`` (with a user),
``knowledge_search``, ``conversation_history``. Failures are MCP tool errors whose text is
engram's ``QueryError`` as JSON. Transports: stdio (default) and streamable HTTP. Guide:
docs/mcp.md."""

from engram_client.mcp.cli import main
from engram_client.mcp.scope import Scope
from engram_client.mcp.server import build_server, serve
from engram_client.mcp.settings import McpSettings

__all__ = ["McpSettings", "Scope", "build_server", "main", "serve"]
