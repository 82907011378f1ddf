"""The MercadoPago simulator's control API (for the client's tests), from tests.shop, and the
test Redis Cluster (for the Redis connection's), from tests.queue."""

from tests.queue.conftest import redis_cluster_url
from tests.shop import sim

__all__ = ["redis_cluster_url", "sim"]
