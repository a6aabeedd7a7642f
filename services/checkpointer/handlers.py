"""What the checkpointer consumes: decoders and the batch functions the runtime calls."""

from __future__ import annotations

from nats.aio.msg import Msg
from pydantic import TypeAdapter

from contracts.chat import SessionEnded
from contracts.state import STATE_EVENT, STATE_EVENT_TYPES
from services.checkpointer.writer import Delivered, StateWriter
from services.runtime.bus import CHAT, STATE
from services.runtime.pipeline import Decoder, contract_decoder
from services.runtime.spec import Consumes

SESSION_ENDED_SUBJECT = "chat.session.ended"
SESSION_ENDED = TypeAdapter[SessionEnded](SessionEnded)


def state_decoder() -> Decoder[Delivered]:
    """The contract decoder, plus the message's stream sequence for the ordering gate."""
    decode_event = contract_decoder(STATE_EVENT)

    def decode(msg: Msg) -> Delivered:
        return Delivered(decode_event(msg), msg.metadata.sequence.stream, msg.data or b"")

    return decode


def consumes(writer: StateWriter) -> list[Consumes]:
    return [
        Consumes(
            STATE, STATE.subjects, state_decoder(), writer.apply_state, contracts=STATE_EVENT_TYPES
        ),
        Consumes(
            CHAT,
            (SESSION_ENDED_SUBJECT,),
            contract_decoder(SESSION_ENDED),
            writer.apply_session_ends,
            contracts=(SessionEnded,),
        ),
    ]
