"""Benchmark: how long `ticketera db backup` and `ticketera db restore` take for a large sale.

A database holding N paid orders of one ticket each (default 100,000: the seat, the hold, the order,
its approved payment, its ticket and two audit lines apiece, inserted directly) is backed up by the
real command, then restored by the real command into an empty database of the same engine. Reported:
wall time of each, rows per second, and the file's size. Never asserted.

    .venv/bin/python benchmarks/backup.py                       # make bench-backup (MariaDB)
    .venv/bin/python benchmarks/backup.py --orders 20000 --backend sqlite
"""

from __future__ import annotations

import os
import sys

# Running this file puts its folder first on sys.path, where benchmarks/queue.py would shadow the
# standard library's `queue`: drop it, then add the project root (see benchmarks/harness.py).
if os.path.realpath(sys.path[0] or os.curdir) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks import harness
from ticketera.config import to_async_url
from ticketera.kit.db import create_engine
from ticketera.kit.migrate import upgrade
from ticketera.models import metadata

BATCH = 5000


@dataclass
class Result:
    backend: str
    orders: int
    rows: int
    fill_s: float
    backup_s: float
    restore_s: float
    file_mb: float


def sale_rows(orders: int) -> dict[str, list[dict[str, Any]]]:
    now = datetime.now(UTC).replace(microsecond=0)
    price = Decimal("9000.00")
    rows: dict[str, list[dict[str, Any]]] = {
        name: [] for name in ("seats", "holds", "orders", "payments", "tickets", "audit_log")
    }
    for n in range(1, orders + 1):
        rows["seats"].append({"id": n, "event_id": 1, "section_id": 1, "status": "sold"})
        rows["holds"].append(
            {
                "id": n,
                "public_id": f"h{n:031d}",
                "event_id": 1,
                "user_id": f"~fan{n}",
                "quantity": 1,
                "total": price,
                "currency": "ARS",
                "expires_at": now + timedelta(minutes=10),
            }
        )
        rows["orders"].append(
            {
                "id": n,
                "event_id": 1,
                "hold_id": n,
                "user_id": f"~fan{n}",
                "buyer_email": f"fan{n}@example.com",
                "buyer_name": f"Fan {n}",
                "total": price,
                "currency": "ARS",
                "quantity": 1,
                "status": "paid",
                "expires_at": now + timedelta(minutes=10),
                "paid_at": now,
                "idempotency_key": f"order-{n}",
                "request_digest": f"{n:064d}",
            }
        )
        rows["payments"].append(
            {
                "id": n,
                "provider_payment_id": str(1_300_000_000 + n),
                "order_id": n,
                "status": "approved",
                "amount": price,
                "refunded_amount": Decimal("0.00"),
            }
        )
        rows["tickets"].append(
            {
                "id": n,
                "serial": 10_000_000 + n,
                "code": "T" * 100,
                "event_id": 1,
                "order_id": n,
                "seat_id": n,
                "section_id": 1,
                "section_name": "Campo",
                "issued_at": now,
            }
        )
        for index, status in enumerate(("pending_payment", "paid")):
            rows["audit_log"].append(
                {
                    "id": 2 * n - 1 + index,
                    "entity": "order",
                    "entity_id": n,
                    "actor": "system",
                    "at": now,
                    "to_status": status,
                }
            )
    return rows


async def fill(url: str, orders: int) -> int:
    engine = create_engine(url, pool_size=1)
    try:
        await upgrade(engine)
        async with engine.begin() as connection:
            now = datetime.now(UTC)
            await connection.execute(
                metadata.tables["events"].insert(),
                [{"id": 1, "name": "Backup rush", "starts_at": now + timedelta(days=30)}],
            )
            await connection.execute(
                metadata.tables["sections"].insert(),
                [
                    {
                        "id": 1,
                        "event_id": 1,
                        "name": "Campo",
                        "kind": "general_admission",
                        "price": Decimal("9000.00"),
                        "capacity": orders,
                    }
                ],
            )
            total = 2
            for name, table_rows in sale_rows(orders).items():
                table = metadata.tables[name]
                for start in range(0, len(table_rows), BATCH):
                    await connection.execute(table.insert(), table_rows[start : start + BATCH])
                total += len(table_rows)
        return total
    finally:
        await engine.dispose()


def run_command(env: dict[str, str], workdir: Path, *args: str) -> tuple[float, str]:
    command = Path(sys.executable).parent / "ticketera"
    started = time.perf_counter()
    done = subprocess.run(
        [str(command), *args], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise harness.BenchmarkError(f"ticketera {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def measure(backend: str, orders: int, workdir: Path) -> Result:
    with (
        harness.backend_database(backend, workdir) as source_url,
        harness.backend_database(backend, workdir / "target") as target_url,
    ):
        started = time.perf_counter()
        rows = asyncio.run(fill(to_async_url(source_url), orders))
        fill_s = time.perf_counter() - started
        base = harness.service_environment(harness.passed_environment(), source_url, workdir)
        backup_s, output = run_command(
            base, workdir, "db", "backup", "--output", str(workdir / "sale.jsonl.gz")
        )
        path = Path(output.strip().splitlines()[-1])
        target = {**base, "DATABASE_URL": target_url}
        restore_s, _ = run_command(target, workdir, "db", "restore", str(path))
        return Result(backend, orders, rows, fill_s, backup_s, restore_s, path.stat().st_size / 2**20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Backup and restore of a large sale.")
    parser.add_argument("--orders", type=int, default=100_000, help="paid orders (default 100,000)")
    parser.add_argument("--backend", choices=("mariadb", "sqlite"), default="mariadb")
    harness.add_json_option(parser)
    args = parser.parse_args(argv)
    load = harness.start(f"Ticketera backup benchmark: {args.orders:,} paid orders on {args.backend}")
    with tempfile.TemporaryDirectory(prefix="ticketera-bench-backup-") as tmp:
        workdir = Path(tmp)
        (workdir / "target").mkdir()
        result = measure(args.backend, args.orders, workdir)
    r = result
    print(
        f"\n{r.orders:,} paid orders ({r.rows:,} rows) on {r.backend}: filled in {r.fill_s:.1f} s\n"
        f"  backup   {r.backup_s:6.1f} s  ({r.rows / r.backup_s:,.0f} rows/s), file {r.file_mb:.1f} MB\n"
        f"  restore  {r.restore_s:6.1f} s  ({r.rows / r.restore_s:,.0f} rows/s), migrated to head after\n"
        "Both are the real commands (a process each, its start-up included). Reported, never asserted."
    )
    harness.write_figures(args, load, result=asdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
