"""TCP proxies in front of PostgreSQL, for failure tests.

``PostgresCut`` can be cut (every connection closed, new ones refused) and restored: a
database outage as the workers see it, for the outage test and bench/outage.py.

``CommitCut`` reads the PostgreSQL wire protocol and, for the COMMITs it is armed for, lets
the COMMIT reach the server, waits for the server's answer, and closes the connection
instead of passing that answer on: the transaction is committed, and the client cannot
know it (an ambiguous COMMIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class PostgresCut:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._open = True
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.refused = 0  # connections refused while cut

    async def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._links |= {writer, up_writer}
        try:
            await self._relay(reader, writer, up_reader, up_writer)
        finally:
            for end in (writer, up_writer):
                end.close()
                self._links.discard(end)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Both directions of one connection, until either side closes."""
        await asyncio.gather(
            self._pipe(_chunks(reader), up_writer), self._pipe(_chunks(up_reader), writer)
        )

    async def _pipe(self, source: AsyncIterator[bytes], writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            async for data in source:
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()
        self._links.discard(writer)

    def cut(self) -> int:
        """Close every connection and refuse new ones; how many links were open."""
        self._open = False
        links = list(self._links)
        for writer in links:
            writer.close()
        return len(links)

    def restore(self) -> None:
        self._open = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(65536):
        yield data


# --- the wire protocol (www.postgresql.org/docs/current/protocol-message-formats.html) ---

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104  # answered by one byte, 'S' or 'N'
COMMIT_SQL = re.compile(rb"\s*COMMIT\b", re.IGNORECASE)


async def _untyped(reader: asyncio.StreamReader) -> bytes:
    """A startup-phase packet: 4-byte length (itself included), then the body."""
    head = await reader.readexactly(4)
    return head + await reader.readexactly(struct.unpack("!i", head)[0] - 4)


async def _typed(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Every later message: 1-byte type, 4-byte length (itself included), then the body."""
    while True:
        try:
            head = await reader.readexactly(5)
        except asyncio.IncompleteReadError:
            return
        yield head + await reader.readexactly(struct.unpack("!i", head[1:])[0] - 4)


def is_commit(frame: bytes) -> bool:
    """A simple Query (asyncpg's ``COMMIT;``, sent by ``Transaction.__aexit__``) or an
    extended-protocol Parse whose SQL is a COMMIT."""
    if frame[:1] == b"Q":
        sql = frame[5:]
    elif frame[:1] == b"P":
        sql = frame[5:].split(b"\0", 2)[1]  # statement name, then the SQL
    else:
        return False
    return COMMIT_SQL.match(sql) is not None


@dataclass
class _Session:
    pid: int = 0  # the server process, from BackendKeyData
    cutting: bool = False  # an armed COMMIT went to the server; withhold its answer
    tag: str = ""  # the answer's CommandComplete tag: COMMIT, or ROLLBACK if it had failed


@dataclass(frozen=True)
class Cut:
    pid: int  # the server process whose COMMIT was cut
    tag: str  # what the server answered: "COMMIT" means it committed


class CommitCut(PostgresCut):
    """Cuts the connection of the COMMITs it is armed for (by their ordinal among every
    COMMIT seen, from 1) between the server's answer and the client. ``before_commit`` is
    awaited with the server's pid while an armed COMMIT is held, before it is sent on: the
    transaction is still open there (a test may look it up in pg_stat_activity)."""

    def __init__(
        self,
        host: str,
        port: int,
        before_commit: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(host, port)
        self._armed: set[int] = set()
        self._before_commit = before_commit
        self.commits = 0  # COMMITs seen on their way to the server
        self.cuts: list[Cut] = []

    def arm(self, ordinals: Iterable[int]) -> None:
        self._armed |= set(ordinals)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        # The untyped startup phase: SSL/GSS encryption requests (asyncpg sends one first),
        # each answered by a single byte, then the StartupMessage (or a CancelRequest).
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            packet = await _untyped(reader)
            while struct.unpack("!i", packet[4:8])[0] in (SSL_REQUEST, GSSENC_REQUEST):
                up_writer.write(packet)
                answer = await up_reader.readexactly(1)
                writer.write(answer)
                if answer != b"N":  # encrypted from here on: relay it unread
                    await super()._relay(reader, writer, up_reader, up_writer)
                    return
                packet = await _untyped(reader)
            up_writer.write(packet)
            session = _Session()
            await asyncio.gather(
                self._pipe(self._requests(reader, session), up_writer),
                self._pipe(self._answers(up_reader, session, writer), writer),
            )

    async def _requests(
        self, reader: asyncio.StreamReader, session: _Session
    ) -> AsyncIterator[bytes]:
        async for frame in _typed(reader):
            if is_commit(frame):
                self.commits += 1
                if self.commits in self._armed:
                    session.cutting = True
                    if self._before_commit is not None:
                        await self._before_commit(session.pid)
            yield frame

    async def _answers(
        self, reader: asyncio.StreamReader, session: _Session, client: asyncio.StreamWriter
    ) -> AsyncIterator[bytes]:
        async for frame in _typed(reader):
            kind = frame[:1]
            if kind == b"K":
                session.pid = struct.unpack("!i", frame[5:9])[0]
            if not session.cutting:
                yield frame
            elif kind == b"C":
                session.tag = frame[5:-1].decode()
            elif kind == b"Z":  # the server is done with the COMMIT: its answer never leaves
                self.cuts.append(Cut(session.pid, session.tag))
                client.close()
                return


def through(dsn: str, port: int) -> str:
    """``dsn`` reaching its server through the proxy listening on ``port``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{port}"))
