"""Every table of every domain, imported in one place for Alembic and `db optimize`."""

from ticketera.events.models import Event, Seat, Section
from ticketera.holds.models import Hold, Shopper
from ticketera.kit.audit import AuditEntry
from ticketera.kit.db import Base
from ticketera.orders.models import Order
from ticketera.payments.models import Payment, PaymentNotification
from ticketera.tickets.models import EventKey, OutboxEmail, Ticket

metadata = Base.metadata

__all__ = [
    "AuditEntry",
    "Event",
    "EventKey",
    "Hold",
    "Order",
    "OutboxEmail",
    "Payment",
    "PaymentNotification",
    "Seat",
    "Section",
    "Shopper",
    "Ticket",
    "metadata",
]
