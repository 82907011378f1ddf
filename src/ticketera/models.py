"""Every table of every domain, imported in one place for Alembic and `db optimize`."""

from ticketera.events.models import Event, Seat, Section
from ticketera.holds.models import Hold, Shopper
from ticketera.kit.audit import AuditEntry
from ticketera.kit.db import Base
from ticketera.orders.models import Order

metadata = Base.metadata

__all__ = ["AuditEntry", "Event", "Hold", "Order", "Seat", "Section", "Shopper", "metadata"]
