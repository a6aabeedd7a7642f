"""Reading a message as its contract's event (``pipeline.contract_decoder``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from nats.aio.msg import Msg
from pydantic import TypeAdapter, ValidationError

from contracts.envelope import Envelope, NulRule, nul_paths, without_nul
from services.runtime.errors import InvalidEvent

EnvelopeT = TypeVar("EnvelopeT", bound=Envelope)


def contract_decoder(adapter: TypeAdapter[EnvelopeT]) -> Callable[[Msg], EnvelopeT]:
    """Validate JSON bytes against a contract and check the subject matches the type."""

    def decode(msg: Msg) -> EnvelopeT:
        subject = msg.subject
        try:
            event = adapter.validate_json(msg.data)
        except ValidationError as err:
            errors = "; ".join(
                f"{_location(e['loc'], subject)}: {e['msg']}"
                for e in err.errors(include_url=False)[:10]
            )
            raise InvalidEvent(f"contract violation: {errors}") from None
        if event.type != subject:
            raise InvalidEvent(f"type {event.type!r} published on subject {subject!r}")
        # PostgreSQL text and jsonb cannot hold U+0000. JSON can only carry it escaped, so
        # the bytes tell cheaply whether to look for it field by field.
        if b"\\u0000" in msg.data and (paths := nul_paths(event.model_dump(mode="json"))):
            if event.nul_rule is not NulRule.substitute:
                raise InvalidEvent(
                    f"contract violation: {paths[0]}: contains a NUL character (U+0000), "
                    "which cannot be stored"
                )
            event = cast(EnvelopeT, without_nul(event, paths))
        return event

    return decode


def _location(loc: tuple[int | str, ...], subject: str) -> str:
    # A discriminated union puts the tag first (chat.message.created.payload.role).
    parts = loc[1:] if loc and loc[0] == subject else loc
    return ".".join(str(p) for p in parts) or "<root>"
