"""Webhooks that arrive while the database cannot store them: kept on local disk, drained later.

MercadoPago hears 200 only once a notification is durable. Normally that is its inbox row; when the
database is down (its breaker open, or no connection to be had) it is a file in this spool instead,
written and fsynced before the answer. Each web process drains the spool into the inbox as soon as
the database answers again and processes what it drained at once, so a payment approved during an
outage is paid seconds after the database is back instead of at the reconciler's next pass.

Local disk, not Redis: the spool must hold when everything else is failing, and Redis never holds
the only copy of anything that costs money. One file per notification (written under a temporary
name, then renamed) keeps each one whole across a crash; several processes may drain one folder,
since storing a notification twice is one inbox row (its dedup key). Written by hand: it is a few
file operations, and no kept library offers a durable folder queue of this shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import orjson
import structlog

from ticketera.payments.service import IncomingNotification

log = structlog.get_logger(__name__)

_SUFFIX = ".json"


@dataclass(frozen=True)
class SpooledNotification:
    path: Path
    notification: IncomingNotification
    received_at: datetime


class NotificationSpool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def keep(self, notification: IncomingNotification, *, received_at: datetime) -> None:
        """Write the notification durably; raises OSError when the disk cannot take it."""
        await asyncio.to_thread(self._write, notification, received_at)

    def has_pending(self) -> bool:
        """Cheap enough to ask every second: one directory read, usually of an empty folder."""
        try:
            with os.scandir(self.folder) as entries:
                return any(entry.name.endswith(_SUFFIX) for entry in entries)
        except FileNotFoundError:
            return False

    def pending(self) -> list[SpooledNotification]:
        """What is spooled, oldest first; files that cannot be read are set aside, not retried."""
        spooled = []
        for path in sorted(self.folder.glob(f"*{_SUFFIX}")):
            try:
                record = orjson.loads(path.read_bytes())
                notification = IncomingNotification(**record["notification"])
                received_at = datetime.fromisoformat(record["receivedAt"])
            except FileNotFoundError:
                continue  # another process drained it meanwhile
            except (ValueError, TypeError, KeyError) as exc:
                log.error("notification.spool_unreadable", path=str(path), error=type(exc).__name__)
                with contextlib.suppress(FileNotFoundError):
                    path.rename(path.with_suffix(".unreadable"))
                continue
            spooled.append(SpooledNotification(path, notification, received_at))
        return spooled

    @staticmethod
    def discard(spooled: SpooledNotification) -> None:
        with contextlib.suppress(FileNotFoundError):
            spooled.path.unlink()

    def _write(self, notification: IncomingNotification, received_at: datetime) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # The name sorts by arrival, so draining keeps the order MercadoPago sent them in.
        name = f"{received_at.timestamp():020.6f}-{uuid.uuid4().hex}"
        final = self.folder / f"{name}{_SUFFIX}"
        partial = self.folder / f".{name}.partial"
        record = {"notification": asdict(notification), "receivedAt": received_at.isoformat()}
        with partial.open("wb") as file:
            file.write(orjson.dumps(record))
            file.flush()
            os.fsync(file.fileno())
        partial.rename(final)
        # The rename is durable only once the folder itself is on disk.
        folder = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
