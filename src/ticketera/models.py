"""Every table of every domain, imported in one place for Alembic and `db optimize`."""

from ticketera.events.models import Event, Seat, Section
from ticketera.kit.db import Base

metadata = Base.metadata

__all__ = ["Event", "Seat", "Section", "metadata"]
