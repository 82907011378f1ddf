"""A copy of Redis' data beside a database backup: the RDB snapshot each server sends a replica.

Redis keeps its AOF and RDB files on its own disk, often another machine or a container's volume
this process cannot read. What any client can get is the snapshot a master sends a new replica:
`SYNC` answers with a fresh RDB file (`$<length>`, then the bytes), which is what `redis-cli --rdb`
saves. No kept library does this step: redis-py reads replies, not a replication stream, so the
few lines of protocol are written here. `REPLCONF rdb-only 1` (Redis 7) tells the master to close
after the file instead of streaming its writes on.

The file is the server's whole dataset in Redis' own format, checked by Redis when it loads it
(its last 8 bytes are a CRC64). Restoring it is Redis' way: stop the server, put the file in its
`dir` as its `dbfilename`, start it with `appendonly no`, then `CONFIG SET appendonly yes` writes a
new AOF from it (docs/despliegue.md). A cluster has one file per master.

What it holds is the waiting rooms and rate-limit counters; nothing in it costs money (the database
is the truth for seats, orders, payments and tickets), so a lost snapshot loses places in line only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog
from redis.asyncio.cluster import RedisCluster

log = structlog.get_logger(__name__)

RDB_MAGIC = b"REDIS"
# Generous: a master forks and writes the whole dataset before the first byte of it is sent.
SNAPSHOT_TIMEOUT_SECONDS = 600.0
CHUNK_BYTES = 1 << 20


class SnapshotError(RuntimeError):
    """The server would not send a snapshot, or what it sent is no RDB file."""


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisServer:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )


@dataclass(frozen=True)
class Snapshot:
    server: RedisServer
    path: Path
    size: int


def _command(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded)


async def _reply_line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line:
        raise SnapshotError("the server closed the connection")
    return line.rstrip(b"\r\n")


async def fetch_snapshot(server: RedisServer, destination: Path) -> Snapshot:
    """Ask `server` for a fresh RDB snapshot and write it to `destination` (fsynced, renamed into
    place, so a half-written file never carries the final name)."""
    context = ssl.create_default_context() if server.tls else None
    async with asyncio.timeout(SNAPSHOT_TIMEOUT_SECONDS):
        reader, writer = await asyncio.open_connection(
            server.host, server.port, ssl=context, limit=CHUNK_BYTES
        )
        try:
            if server.password is not None:
                credentials = (server.username, server.password) if server.username else (server.password,)
                writer.write(_command("AUTH", *credentials))
                answer = await _reply_line(reader)
                if not answer.startswith(b"+"):
                    raise SnapshotError(f"AUTH refused: {answer.decode(errors='replace')}")
            writer.write(_command("REPLCONF", "rdb-only", "1"))
            # Older servers answer an error and stream on after the file; it is read, then closed.
            await _reply_line(reader)
            writer.write(_command("SYNC"))
            await writer.drain()
            header = b""
            while not header:  # the master sends bare newlines while it forks and saves
                header = await _reply_line(reader)
            if not header.startswith(b"$") or not header[1:].isdigit():
                raise SnapshotError(f"no snapshot: {header[:200].decode(errors='replace')}")
            size = int(header[1:])
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".partial")
            with partial.open("wb") as output:
                remaining = size
                while remaining:
                    chunk = await reader.read(min(CHUNK_BYTES, remaining))
                    if not chunk:
                        raise SnapshotError(f"the snapshot stopped {remaining} bytes short of {size}")
                    if remaining == size and not chunk.startswith(RDB_MAGIC):
                        raise SnapshotError("what the server sent is not an RDB file")
                    output.write(chunk)
                    remaining -= len(chunk)
                output.flush()
                os.fsync(output.fileno())
            partial.replace(destination)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    log.info("redis.snapshot_saved", host=server.host, port=server.port, bytes=size, path=str(destination))
    return Snapshot(server, destination, size)


async def masters_of(url: str, *, cluster: bool) -> list[RedisServer]:
    """The servers whose data is the dataset: the one server, or each master of a cluster (its
    replicas hold copies)."""
    single = RedisServer.from_url(url)
    if not cluster:
        return [single]
    client = RedisCluster.from_url(url)
    try:
        await client.initialize()
        return [
            RedisServer(node.host, int(node.port), single.username, single.password, single.tls)
            for node in client.get_primaries()
        ]
    finally:
        await client.aclose()


async def snapshot_beside(backup: Path, url: str, *, cluster: bool) -> list[Snapshot]:
    """A snapshot of each master beside the database backup `backup`, named after it."""
    stem = backup.name.removesuffix(".jsonl.gz")
    snapshots = []
    for server in await masters_of(url, cluster=cluster):
        name = f"{stem}.redis-{server.host}-{server.port}.rdb" if cluster else f"{stem}.redis.rdb"
        snapshots.append(await fetch_snapshot(server, backup.with_name(name)))
    return snapshots
