"""What fits in one NATS message, checked before anything is sent.

The server refuses a message whose headers plus body exceed its ``max_payload`` (1 MiB by
default) with ``-ERR 'Maximum Payload Violation'``, and nats-py answers any ``-ERR`` by
closing the connection for good: no reconnect, every subscription and pull loop of the
worker dead. nats-py checks only the body against the limit, never the headers, so a
message a few bytes under the limit with headers (a dead letter's reason, ``Nats-Msg-Id``)
reached the server and killed the connection. Every runtime publish that can be large
goes through ``check_fits`` (or ``publish_checked``) first: a message that would not fit
raises ``MessageTooLarge``, an ordinary exception, and is never sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck

# nats-py's header block: "NATS/1.0\r\n", then "Key: value\r\n" per header, then "\r\n".
_HEADER_LINE = len(b"NATS/1.0\r\n")
_PER_HEADER = len(b": \r\n")
_END = len(b"\r\n")


class MessageTooLarge(ValueError):
    """Headers plus body would exceed the server's max_payload: not sent."""

    def __init__(self, subject: str, size: int, limit: int) -> None:
        super().__init__(
            f"message to {subject!r} is {size} bytes with its headers; the server takes at "
            f"most {limit}"
        )
        self.subject = subject
        self.size = size
        self.limit = limit


def headers_size(headers: Mapping[str, str] | None) -> int:
    """Bytes the header block takes on the wire, exactly as nats-py encodes it (keys and
    values stripped; CR and LF in a value become one space each, so lengths keep)."""
    if not headers:
        return 0
    size = _HEADER_LINE + _END
    for key, value in headers.items():
        if key.strip():
            size += len(key.strip().encode()) + len(value.strip().encode()) + _PER_HEADER
    return size


def message_size(data: bytes, headers: Mapping[str, str] | None) -> int:
    """What the server compares with max_payload: header block plus body."""
    return headers_size(headers) + len(data)


def check_fits(
    nc: NatsClient,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    *,
    margin: int = 0,
) -> None:
    """Raise MessageTooLarge unless the message fits in ``nc.max_payload - margin``."""
    limit = nc.max_payload - margin
    size = message_size(data, headers)
    if size > limit:
        raise MessageTooLarge(subject, size, limit)


async def publish_checked(
    js: JetStreamContext,
    subject: str,
    data: bytes,
    *,
    headers: dict[str, str] | None = None,
    stream: str | None = None,
    margin: int = 0,
) -> PubAck:
    """``js.publish`` that refuses, before sending, what the server would refuse."""
    sent = dict(headers or {})
    if stream is not None:  # js.publish adds this header itself; it counts too
        sent[Header.EXPECTED_STREAM] = stream
    check_fits(js._nc, subject, data, sent, margin=margin)
    return await js.publish(subject, data, headers=sent or None, stream=stream)
