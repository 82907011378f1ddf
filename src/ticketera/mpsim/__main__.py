"""`python -m ticketera.mpsim --host H --port P`: the simulator configured by the environment alone.

`ticketera dev` starts it this way, passing MP_ACCESS_TOKEN and MP_WEBHOOK_SECRET explicitly; people
use `ticketera mp-sim`, which also fills in the development secrets.
"""

from __future__ import annotations

import argparse
import os
import sys

from ticketera.infra.logging import configure_logging
from ticketera.mpsim.runner import serve_simulator
from ticketera.mpsim.settings import SimulatorConfigError, SimulatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ticketera.mpsim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = SimulatorSettings()
    port = args.port or settings.mpsim_port
    settings = settings.model_copy(update={"mpsim_port": port})
    configure_logging(json_console=False, level=os.environ.get("LOG_LEVEL", "INFO"))
    try:
        serve_simulator(settings, host=args.host, port=port)
    except SimulatorConfigError as exc:
        sys.exit(f"MercadoPago simulator: {exc}")


if __name__ == "__main__":
    main()
