"""engram's client (placeholder: the client package's own ``__init__`` replaces it)."""
