"""The MCP server's configuration: environment variables with the prefix ``ENGRAM_MCP_``.

Tenant, agent and user come from here and never from a tool's arguments: a model that
calls the tools cannot widen its own scope (another tenant's memories, another user's
state) by choosing an argument."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.envelope import TENANT_PATTERN
from engram_client.options import Connection, Retry

NAME_PATTERN = r"^\S{1,200}$"


class McpSettings(BaseSettings):
    """``engram-mcp`` (and ``engram mcp``): where the bus is and whose memory it serves."""

    model_config = SettingsConfigDict(env_prefix="ENGRAM_MCP_", extra="ignore", frozen=True)

    tenant_id: str = Field(
        pattern=TENANT_PATTERN,
        description="The tenant every tool reads and writes; required.",
        examples=["acme"],
    )
    agent_id: str = Field(
        pattern=NAME_PATTERN,
        description="The agent whose memories and state the tools use; required.",
        examples=["travel-bot"],
    )
    user_id: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="The user the agent serves: state tools need it (they are not offered "
        "without it); memories are written about this user, and hits about other users are "
        "left out of searches; conversations of another user are not found.",
        examples=["u-123"],
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server(s), comma-separated; credentials may be in the URL "
        "(engram's upstream user: nats://engram_producer:<password>@host:4222).",
        examples=["nats://engram_producer:secret-password-1234@127.0.0.1:4222"],
    )
    nats_credentials_file: str | None = Field(
        default=None, description="A NATS .creds file instead.", examples=[None]
    )
    nats_inbox_prefix: str | None = Field(
        default=None,
        description="Reply-inbox prefix; default: `_INBOX_<name>` for engram's user "
        "`engram_<name>` in the URL (engram's NATS accounts allow only that), else `_INBOX`.",
        examples=["_INBOX_producer"],
    )
    producer: str = Field(
        default="engram-mcp",
        min_length=1,
        description="The envelope's `producer` of the events the tools publish.",
        examples=["engram-mcp"],
    )
    query_timeout_s: float = Field(
        default=5.0, gt=0, description="How long one try of a query waits.", examples=[5.0]
    )
    query_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries of a query without a reply.", examples=[3]
    )
    state_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="How long `state_patch` waits to see its patch applied (0: do not wait).",
        examples=[5.0],
    )
    remembered_ids: int = Field(
        default=100_000,
        ge=1,
        description="Memory ids this server has shown or written, kept so that "
        "`memory_forget` erases only those (the oldest are dropped past this many).",
        examples=[100_000],
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Streamable HTTP: interface to listen on (the server has no "
        "authentication of its own: keep it local or behind an authenticating proxy).",
        examples=["127.0.0.1"],
    )
    http_port: int = Field(
        default=8765, ge=0, le=65535, description="Streamable HTTP: port.", examples=[8765]
    )
    http_path: str = Field(
        default="/mcp", pattern=r"^/", description="Streamable HTTP: path.", examples=["/mcp"]
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING",
        description="Logs go to stderr (stdout is the protocol on stdio).",
        examples=["WARNING"],
    )

    def connection(self) -> Connection:
        servers = tuple(s.strip() for s in self.nats_url.split(",") if s.strip())
        return Connection(
            servers=servers if len(servers) > 1 else servers[0],
            credentials_file=self.nats_credentials_file,
            inbox_prefix=self.nats_inbox_prefix or default_inbox(servers[0]),
            name=f"engram-mcp:{self.tenant_id}:{self.agent_id}",
        )

    def retry(self) -> Retry:
        return Retry(attempts=self.query_attempts, timeout_s=self.query_timeout_s)


def default_inbox(url: str) -> str:
    """engram's NATS accounts let user ``engram_<name>`` read replies only under
    ``_INBOX_<name>`` (docs/security.md); any other server takes NATS's default."""
    user = urlsplit(url if "://" in url else f"nats://{url}").username or ""
    return f"_INBOX_{user.removeprefix('engram_')}" if user.startswith("engram_") else "_INBOX"
