"""The shape README's "How it is built" draws, checked on the code as it is.

The domain graph itself (no import back up, no endpoint importing another domain's) is checked by
import-linter (`make lint`, contracts in pyproject.toml); these tests check what an import graph
cannot see: who writes which table, and where handlers get their objects from.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import ticketera
from ticketera.kit.db import Base
from ticketera.models import metadata

SOURCE = Path(ticketera.__file__).parent
DOMAINS = ("events", "queue", "holds", "tickets", "orders", "payments", "ops")
# Each table's one writer. Seats are made by events (a venue's map) and change hands only through
# holds (held, kept for an order, sold, released); the audit log is written through kit.audit.
WRITERS: dict[str, set[str]] = {
    "events": {"events"},
    "sections": {"events"},
    "seats": {"events", "holds"},
    "holds": {"holds"},
    "shoppers": {"holds"},
    "orders": {"orders"},
    "payments": {"payments"},
    "payment_notifications": {"payments"},
    "tickets": {"tickets"},
    "event_keys": {"tickets"},
    "email_outbox": {"tickets"},
    "audit_log": {"kit"},
}
WRITE_CALLS = {"insert", "update", "delete", "insert_unless_present"}


def _modules(*parts: str) -> Iterator[Path]:
    for path in sorted((SOURCE.joinpath(*parts)).rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def _table_of_class() -> dict[str, str]:
    """Model class names (and the module-level Table aliases the repositories use) to table names."""
    found: dict[str, str] = {}
    for mapper in Base.registry.mappers:
        found[mapper.class_.__name__] = str(getattr(mapper.local_table, "name", ""))
    return found


def _name(node: ast.expr) -> str:
    """`Order` for `Order`, `HOLDS` for `repository.HOLDS`, "" for anything else."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _written_tables(path: Path, classes: dict[str, str]) -> set[str]:
    """Tables this module writes with Core or ORM statements: `update(Order)`, `insert(HOLDS)`,
    `insert_unless_present(session, OutboxEmail, ...)`, and `X = cast(Table, Model.__table__)`."""
    tree = ast.parse(path.read_text())
    aliases = dict(classes)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            text = ast.unparse(node.value)
            for name, table in classes.items():
                if f"{name}.__table__" in text:
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            aliases[target.id] = table
    written: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if _name(node.func) not in WRITE_CALLS:
            continue
        for argument in node.args[:2]:
            if _name(argument) in aliases:
                written.add(aliases[_name(argument)])
    return written


def test_every_table_has_its_writers_listed() -> None:
    assert set(WRITERS) == set(metadata.tables)


@pytest.mark.parametrize("domain", [*DOMAINS, "kit"])
def test_a_domain_writes_only_the_tables_it_owns(domain: str) -> None:
    classes = _table_of_class()
    foreign = {
        f"{path.relative_to(SOURCE)} writes {table}"
        for path in _modules(domain)
        for table in _written_tables(path, classes)
        if domain not in WRITERS[table]
    }
    assert not foreign


def test_the_writer_check_sees_writes() -> None:
    """The check above would catch a foreign write: it finds the ones each owner makes."""
    classes = _table_of_class()
    seen = {table for path in _modules() for table in _written_tables(path, classes)}
    assert {"orders", "holds", "seats", "tickets", "email_outbox", "payment_notifications"} <= seen


def test_handlers_never_read_app_state() -> None:
    """Handlers name what they need (`Db`, `CurrentClock`, a domain's alias); only the provider in
    kit.http and the composition root touch the app's state."""
    allowed = {SOURCE / "kit" / "http.py", SOURCE / "composition.py", SOURCE / "main.py"}
    readers = [
        str(path.relative_to(SOURCE))
        for path in _modules()
        if "mpsim" not in path.parts
        and path not in allowed
        and any(
            isinstance(node, ast.Attribute) and node.attr == "state" and "app" in ast.unparse(node.value)
            for node in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert not readers


def test_endpoints_take_no_request_for_what_a_dependency_gives() -> None:
    """`request.app` in an endpoint module means a handler fetching its own objects."""
    offenders = [
        str(path.relative_to(SOURCE))
        for domain in DOMAINS
        for path in _modules(domain)
        if path.name in ("endpoints.py", "page.py") and "request.app" in path.read_text()
    ]
    assert not offenders
