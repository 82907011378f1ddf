"""Figures: the weight of every page (the shop's, the console's, the door's), in bytes of HTML + JS + CSS.

For each page: the HTML as served, plus every style sheet and module script it links, plus the
modules those import (followed through `import ... from "./x.js"`), each counted once; raw bytes
and gzip bytes (what nginx sends). The app runs in-process on a throwaway SQLite file, with one
event (a reserved section of 100 seats and a general-admission one), a logged-in organizer and a logged-in
door (the seat map's JSON, which /buy reads after it loads, is not counted).

    .venv/bin/python benchmarks/page_weight.py
"""

from __future__ import annotations

import asyncio
import gzip
import re
import sys
import tempfile
from pathlib import Path

import httpx

sys.path[0:1] = [str(Path(__file__).resolve().parents[1])]

from ticketera.config import Settings  # noqa: E402 - after the path fix above
from ticketera.kit.db import create_engine  # noqa: E402
from ticketera.kit.migrate import upgrade  # noqa: E402
from ticketera.main import create_app  # noqa: E402

ADMIN_KEY = "page-weight-admin"
STAFF_KEY = "page-weight-staff"
LINKED = re.compile(r'<(?:link rel="stylesheet" href|script type="module" src)="([^"]+)"')
IMPORTED = re.compile(r'import\s[^;]*?from\s+"(\./[^"]+)"')
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


async def weigh(http: httpx.AsyncClient, path: str) -> tuple[int, int, int]:
    """Raw bytes, gzip bytes and the number of files of the page at `path`."""
    page = await http.get(path)
    assert page.status_code == 200, (path, page.status_code)
    files: dict[str, bytes] = {path: page.content}
    pending = LINKED.findall(page.text)
    while pending:
        address = pending.pop()
        if address in files:
            continue
        files[address] = (await http.get(address)).content
        if address.endswith(".js"):
            folder = address.rsplit("/", 1)[0]
            pending += [f"{folder}/{name[2:]}" for name in IMPORTED.findall(files[address].decode())]
    raw = sum(len(content) for content in files.values())
    packed = sum(len(gzip.compress(content)) for content in files.values())
    return raw, packed, len(files)


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/weight.db"
        engine = create_engine(url, pool_size=2)
        await upgrade(engine)
        await engine.dispose()
        settings = Settings(
            _env_file=None,
            database_url=url,
            admin_api_key=ADMIN_KEY,
            staff_api_key=STAFF_KEY,
            secret_key="page-weight-secret",
            data_dir=Path(folder) / "data",
            log_dir=Path(folder) / "logs",
            log_level="WARNING",
            queue_ticker=False,
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://ticketera.test") as http,
        ):
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            event = (
                await http.post(
                    "/api/events",
                    headers=admin,
                    json={
                        "name": "Gran Rex",
                        "startsAt": "2030-12-14T00:00:00Z",
                        "sections": [
                            {
                                "name": "Platea",
                                "price": "15000",
                                "rows": [{"label": r, "seats": 20} for r in "ABCDE"],
                            },
                            {"name": "Campo", "price": "9000", "capacity": 500},
                        ],
                    },
                )
            ).json()
            login = await http.get("/admin/login")
            csrf = CSRF.findall(login.text)[0]
            await http.post("/admin/login", data={"csrf": csrf, "key": ADMIN_KEY})
            door_login = await http.get("/door")
            door_csrf = re.findall(r'name="csrf" value="([^"]+)"', door_login.text)[0]
            await http.post("/door/login", data={"csrf": door_csrf, "key": STAFF_KEY})
            pages = {
                "home": "/",
                "event": f"/events/{event['id']}",
                "queue": f"/events/{event['id']}/queue",
                "buy": f"/events/{event['id']}/buy",
                "door": "/door",
                "door login": "/door",
                "login": "/admin/login?next=/admin",
                "events": "/admin",
                "new event": "/admin/events/new",
                "edit event": f"/admin/events/{event['id']}/edit",
                "dashboard": f"/admin/events/{event['id']}",
                "orders": "/admin/orders?status=paid",
                "cancel (confirm)": f"/admin/events/{event['id']}/cancel",
            }
            print(f"{'page':<18} {'bytes':>8} {'gzip':>7} {'files':>5}")
            for name, path in pages.items():
                if name in ("login", "door login"):
                    async with httpx.AsyncClient(
                        transport=transport, base_url="http://ticketera.test"
                    ) as anonymous:
                        raw, packed, count = await weigh(anonymous, path)
                else:
                    raw, packed, count = await weigh(http, path)
                print(f"{name:<18} {raw:>8} {packed:>7} {count:>5}")


if __name__ == "__main__":
    asyncio.run(main())
