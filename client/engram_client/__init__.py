"""engram's client for upstream services: typed publishing and queries on engram's bus.

Depends on pydantic and nats-py only (the distribution ``engram-bus-client``, from
``client/`` of the engram repository); the models are those of ``contracts``. Full guide:
docs/clients.md.

Public API
----------

``EngramClient`` (async)
    ``await EngramClient.connect(servers, *, tenant_id=None, producer="engram-client",
    retry=None, **connection)``: ``servers`` is a URL (credentials may be in it), URLs, or
    a ``Connection``; ``connection`` keywords are ``Connection``'s fields (user, password,
    token, credentials_file, nkeys_seed_file, tls, tls_hostname, inbox_prefix (default:
    ``_INBOX_<name>`` for engram's user ``engram_<name>``), name, connect_timeout_s,
    connect_within_s, max_reconnect_attempts, reconnect_time_wait_s).
    ``EngramClient(nc, ...)`` wraps a nats-py connection the caller owns. Use as
    ``async with``; ``close()`` drains.

    Events:
      ``publish(event) -> Published(stream, seq, duplicate)``: any event of ``contracts``,
      on the subject equal to its ``type``, with ``Nats-Msg-Id`` from the envelope
      (``<tenant_id>:<event_id>``); returns once JetStream has stored it.
      ``publish_many(events, max_in_flight=64) -> list[Published]``: bulk loads, at most
      ``max_in_flight`` acks awaited at once.
      ``events``: an ``EventBuilder`` (below) with the client's tenant and producer.

    Queries (each returns the result model of its reply; ``tenant_id`` defaults to the
    client's; each takes ``retry=``):
      ``embed(texts) -> EmbedReply``                       query.embed
      ``knowledge_search(text, top_k, filters, mode) -> KnowledgeSearchReply``
                                                           query.knowledge.search
      ``memory_search(text, agent_id=, top_k, filters) -> MemorySearchReply``
                                                           query.memory.search
      ``state_get(user_id=, agent_id=, at_version, at_time, partitions) -> StateGetReply``
                                                           query.state.get
      ``state_history(user_id=, agent_id=, before_version, limit, include_patches)
      -> StateHistoryReply``                               query.state.history
      ``state_diff(user_id=, agent_id=, from_version=, to_version=) -> StateDiffReply``
                                                           query.state.diff
      ``query(request) -> BaseModel``: any query of ``contracts.registry.QUERIES`` by its
      request model.

``SyncEngramClient``: the same methods, blocking (``SyncEngramClient.connect(...)``).

``EventBuilder``: ``conversation_created``, ``conversation_archived``,
``message_created``, ``message_edited``, ``message_deleted``, ``session_started``,
``session_ended``, ``memory_write``, ``memory_forget``, ``memory_consolidate``,
``state_patch``, ``state_checkpoint``, ``state_restore``, and ``envelope(EventType,
payload)`` for any other; ``correlated()`` gives a builder whose events share a
correlation id. Each fills event_id, occurred_at, tenant_id, producer.

``Retry(attempts=4, base_s=0.2, max_s=3.0, timeout_s=5.0)``: bounded retries with
exponential backoff and full jitter of a query without a reply (timeout, no responder,
the service's ``unavailable``) and of a publish without an ack. ``NO_RETRY``: one try.

Errors (``engram_client.errors``), all ``EngramError``:
  ``QueryRejected`` (``.error``: the ``QueryError``; ``.code``, ``.message``, ``.hint``,
  ``.detail``), one subclass per ``ErrorCode``: ``InvalidRequest`` (also raised before
  sending when the request breaks its contract), ``NotFound``, ``Pruned``, ``TooLarge``,
  ``Unavailable``, ``ServerError``; ``RequestTimeout`` (also a ``TimeoutError``: no reply
  on any try); ``PublishFailed`` (and ``BatchPublishFailed`` with per-event results);
  ``BadReply`` (a reply that breaks its contract); ``ConnectFailed`` (no first connection
  within ``Connection.connect_within_s``).
"""

from engram_client.client import BatchPublishFailed, EngramClient, Published
from engram_client.errors import (
    BadReply,
    ConnectFailed,
    EngramError,
    InvalidRequest,
    NotFound,
    Pruned,
    PublishFailed,
    QueryRejected,
    RequestTimeout,
    ServerError,
    TooLarge,
    Unavailable,
)
from engram_client.events import EventBuilder
from engram_client.options import NO_RETRY, Connection, Retry
from engram_client.sync import SyncEngramClient

__all__ = [
    "NO_RETRY",
    "BadReply",
    "BatchPublishFailed",
    "ConnectFailed",
    "Connection",
    "EngramClient",
    "EngramError",
    "EventBuilder",
    "InvalidRequest",
    "NotFound",
    "Pruned",
    "PublishFailed",
    "Published",
    "QueryRejected",
    "RequestTimeout",
    "Retry",
    "ServerError",
    "SyncEngramClient",
    "TooLarge",
    "Unavailable",
]
