"""The app as a module-level object, for servers that take no factory (granian, in
benchmarks/onsale.py --server granian): built from the environment, as `ticketera serve` builds it."""

from ticketera.main import create_app

app = create_app()
