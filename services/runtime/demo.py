"""A realistic demo conversation: what `engram demo` and `engram dev --demo` publish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from contracts import chat, memory
from contracts.envelope import Envelope

TURNS = [
    ("user", "Hi! I'm planning three days in Lisbon in March. Where should I stay?", 18),
    (
        "assistant",
        "Alfama and Baixa are central and walkable; Príncipe Real is quieter. "
        "Do you prefer nightlife or calm evenings?",
        31,
    ),
    ("user", "Calm evenings, and I love good coffee ☕ and bookshops.", 14),
    (
        "assistant",
        "Then Príncipe Real: Livraria Bertrand is nearby (the oldest bookshop in "
        "the world), and the miradouro at sunset is lovely.",
        35,
    ),
    ("user", "Great. Can you draft a day-by-day plan?", 10),
    (
        "assistant",
        "Day 1: Alfama and the castle. Day 2: Belém, pastéis de nata. Day 3: Sintra by train.",
        29,
    ),
]


def demo_conversation(tenant: str = "demo", producer: str = "engram-demo") -> list[Envelope]:
    """One session of a travel chat: messages, an edit, a file, a deleted message, and a
    memory the agent keeps of the user (the session's end makes another)."""
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    cid, sid = uuid4(), uuid4()
    base = {"tenant_id": tenant, "producer": producer}

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    events: list[Envelope] = [
        chat.ConversationCreated(
            **base,
            event_id=uuid4(),
            occurred_at=at(0),
            payload=chat.ConversationCreatedPayload(
                conversation_id=cid,
                title="Lisbon in March",
                user_id="u-ana",
                agent_id="travel-bot",
                metadata={"channel": "web"},
            ),
        ),
        chat.SessionStarted(
            **base,
            event_id=uuid4(),
            occurred_at=at(0.1),
            payload=chat.SessionStartedPayload(
                session_id=sid, conversation_id=cid, user_id="u-ana", agent_id="travel-bot"
            ),
        ),
    ]
    ids = []
    for i, (role, text, tokens) in enumerate(TURNS):
        mid = uuid4()
        ids.append(mid)
        sender = (
            {"sender_user_id": "u-ana"} if role == "user" else {"sender_agent_id": "travel-bot"}
        )
        events.append(
            chat.MessageCreated(
                **base,
                event_id=uuid4(),
                occurred_at=at(1 + i),
                payload=chat.MessageCreatedPayload(
                    message_id=mid,
                    conversation_id=cid,
                    session_id=sid,
                    role=chat.Role(role),
                    content=text,
                    metadata=chat.MessageMetadata(
                        tokens=tokens, model=None if role == "user" else "gpt-4.1"
                    ),
                    parent_message_id=ids[i - 1] if i else None,
                    **sender,
                ),
            )
        )
    events += [
        chat.MessageEdited(
            **base,
            event_id=uuid4(),
            occurred_at=at(3.5),
            payload=chat.MessageEditedPayload(
                message_id=ids[2],
                content="Calm evenings, and I love specialty coffee ☕ and old bookshops.",
                edited_by="u-ana",
                reason="more precise",
            ),
        ),
        chat.FileUploaded(
            **base,
            event_id=uuid4(),
            occurred_at=at(5.5),
            payload=chat.FileUploadedPayload(
                file_id=uuid4(),
                conversation_id=cid,
                message_id=ids[4],
                uploaded_by="u-ana",
                filename="flights.pdf",
                mime_type="application/pdf",
                size_bytes=48213,
                extracted_text="TAP TP1351 LHR→LIS 12 March 08:40",
            ),
        ),
        chat.MessageDeleted(
            **base,
            event_id=uuid4(),
            occurred_at=at(7),
            payload=chat.MessageDeletedPayload(
                message_id=ids[0], deleted_by="u-ana", reason="privacy"
            ),
        ),
        chat.ConversationUpdated(
            **base,
            event_id=uuid4(),
            occurred_at=at(8),
            payload=chat.ConversationUpdatedPayload(
                conversation_id=cid, title="Lisbon: 3 days in March", metadata={"pinned": True}
            ),
        ),
        chat.SessionEnded(
            **base,
            event_id=uuid4(),
            occurred_at=at(9),
            payload=chat.SessionEndedPayload(
                session_id=sid,
                conversation_id=cid,
                user_id="u-ana",
                agent_id="travel-bot",
                reason="user left",
            ),
        ),
        memory.MemoryWrite(
            **base,
            event_id=uuid4(),
            occurred_at=at(9),
            payload=memory.SemanticMemory(
                memory_type="semantic",
                memory_id=uuid4(),
                agent_id="travel-bot",
                user_id="u-ana",
                conversation_id=cid,
                text="Ana prefers calm neighbourhoods, good coffee and bookshops.",
                importance=0.8,
                content=memory.SemanticContent(
                    concept="Ana's travel taste",
                    definition="Calm evenings, good coffee, bookshops; likes Príncipe Real.",
                ),
            ),
        ),
    ]
    return events
