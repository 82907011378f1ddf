"""The shop and the MercadoPago simulator's control API, from tests.shop (the backup's tests sell first)."""

from tests.shop import shop, shop_clock, sim

__all__ = ["shop", "shop_clock", "sim"]
