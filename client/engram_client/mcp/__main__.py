"""``python -m engram_client.mcp``: the same as ``engram-mcp``."""

from engram_client.mcp.cli import main

main()
