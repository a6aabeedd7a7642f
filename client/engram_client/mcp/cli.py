"""``engram-mcp`` (and ``engram mcp``): engram's MCP server on stdio (the default, for a host
that spawns it) or streamable HTTP (``--http``). Configuration: ``ENGRAM_MCP_*`` (see
``McpSettings`` and docs/mcp.md); a failure to start is one line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from engram_client.mcp.server import Unreachable, serve
from engram_client.mcp.settings import McpSettings

EXIT_CONFIG = 2  # as argparse: the command line or environment is wrong
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the bus cannot be reached


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="engram-mcp",
        description="engram's MCP server: memory, state, knowledge and conversation tools "
        "for one tenant and agent (ENGRAM_MCP_TENANT_ID, ENGRAM_MCP_AGENT_ID, "
        "ENGRAM_MCP_USER_ID, ENGRAM_MCP_NATS_URL; see docs/mcp.md).",
    )
    parser.add_argument(
        "--http", action="store_true", help="serve streamable HTTP instead of stdio"
    )
    parser.add_argument("--host", help="HTTP interface (default ENGRAM_MCP_HTTP_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default ENGRAM_MCP_HTTP_PORT, 8765)")
    parser.add_argument("--path", help="HTTP path (default ENGRAM_MCP_HTTP_PATH, /mcp)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    given = {"http_host": args.host, "http_port": args.port, "http_path": args.path}
    try:
        settings = McpSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        fields = ", ".join(
            f"ENGRAM_MCP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        print(f"engram-mcp: bad configuration: {fields}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    try:
        asyncio.run(serve(settings, "http" if args.http else "stdio"))
    except KeyboardInterrupt:
        pass
    except (Unreachable, OSError) as exc:  # the bus, or the HTTP port (in use)
        print(f"engram-mcp: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_UNAVAILABLE) from None


if __name__ == "__main__":
    main()
