"""The MercadoPago simulator's control API (for the client's tests), from tests.shop."""

from tests.shop import sim

__all__ = ["sim"]
