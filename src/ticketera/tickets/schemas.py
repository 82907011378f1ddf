"""Request and response bodies of tickets and check-in."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from ticketera.kit.schemas import PRINTABLE_TEXT, ApiInput, ApiOutput, DatabaseId, iso_text
from ticketera.tickets.models import Ticket

if TYPE_CHECKING:
    from ticketera.tickets.service import Scan

# Codes are base64url; anything longer than a code is refused before it reaches the verifier.
CodeText = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE_TEXT)]
# When a device scanned offline, as ISO 8601 text (without an offset it is taken as UTC).
ScanMoment = Annotated[datetime, BeforeValidator(iso_text)]


class TicketOut(ApiOutput):
    code: str
    section_id: int
    section: str
    seat: str | None
    status: str
    checked_in_at: datetime | None
    qr_png: str
    qr_svg: str

    @classmethod
    def of(cls, ticket: Ticket) -> TicketOut:
        return cls(
            code=ticket.code,
            section_id=ticket.section_id,
            section=ticket.section_name,
            seat=ticket.seat_label,
            status=ticket.status,
            checked_in_at=ticket.checked_in_at,
            qr_png=f"/api/tickets/{ticket.code}/qr.png",
            qr_svg=f"/api/tickets/{ticket.code}/qr.svg",
        )


class OrderTicketsOut(ApiOutput):
    order_id: int
    status: str
    tickets: list[TicketOut]


class CheckinKeyOut(ApiOutput):
    event_id: int
    algorithm: str = "Ed25519"
    # The 32 raw bytes of the public key, base64url without padding.
    public_key: str
    code_format: str = (
        "base64url(version:u8 | serial:u64 | event_id:u64 | seat_id:u64 | ed25519 signature:64)"
    )


class CheckinIn(ApiInput):
    code: CodeText
    # The door's event: a valid code for another event is refused here.
    event_id: DatabaseId | None = None
    device_id: DeviceId | None = None


class OfflineScanIn(ApiInput):
    code: CodeText
    scanned_at: ScanMoment
    device_id: DeviceId | None = None


class CheckinBatchIn(ApiInput):
    event_id: DatabaseId | None = None
    device_id: DeviceId | None = None
    scans: Annotated[list[OfflineScanIn], Field(min_length=1, max_length=5000)]


class SectionCheckinOut(ApiOutput):
    section_id: int
    section: str
    sold: int
    checked_in: int


class CheckinFiguresOut(ApiOutput):
    event_id: int
    sold: int
    checked_in: int
    sections: list[SectionCheckinOut]


class ScannedTicketOut(ApiOutput):
    event_id: int
    order_id: int
    section: str
    seat: str | None
    status: str


class ScanOut(ApiOutput):
    """A scan's answer (`scan_body` builds it): 200 `ok`, 409 `already_checked_in` (with when and
    where), 410 `void`, 404 `invalid` (with the reason)."""

    result: Literal["ok", "already_checked_in", "void", "invalid"]
    ticket: ScannedTicketOut | None = None
    at: datetime | None = None
    device: str | None = None
    reason: str | None = None


class BatchScanOut(ScanOut):
    # The scan's place in the request's `scans`.
    index: int


class CheckinBatchOut(ApiOutput):
    applied: int
    # Scans per result, e.g. {"ok": 40, "already_checked_in": 2}.
    counts: dict[str, int]
    results: list[BatchScanOut]
    conflicts: list[BatchScanOut]


def scan_body(scan: Scan) -> dict[str, Any]:
    """A scan's answer: the result, and what the door needs to see of the ticket."""
    body: dict[str, Any] = {"result": scan.result.value}
    ticket = scan.ticket
    if ticket is not None:
        body["ticket"] = {
            "eventId": ticket.event_id,
            "orderId": ticket.order_id,
            "section": ticket.section_name,
            "seat": ticket.seat_label,
            "status": ticket.status,
        }
        if ticket.checked_in_at is not None:
            body["at"] = ticket.checked_in_at.isoformat().replace("+00:00", "Z")
            body["device"] = ticket.checked_in_device
    if scan.reason:
        body["reason"] = scan.reason
    return body


def batch_body(scans: list[Scan]) -> dict[str, Any]:
    """A batch of offline scans answered (`CheckinBatchOut`): every result, the counts, and the
    conflicts apart, which is what a door shows after syncing."""
    bodies = [{"index": index, **scan_body(scan)} for index, scan in enumerate(scans)]
    counts: dict[str, int] = {}
    for scan in scans:
        counts[scan.result.value] = counts.get(scan.result.value, 0) + 1
    conflicts = [item for item in bodies if item["result"] != "ok"]
    return {"applied": len(scans), "counts": counts, "results": bodies, "conflicts": conflicts}
