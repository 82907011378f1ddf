"""The pages' foundation without a browser: languages, money and dates, the catalogs, static files,
the language switch and the headers every page carries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from babel.messages.pofile import read_po

from ticketera.web import static
from ticketera.web.i18n import LOCALE_DIR, LOCALES, PageLocale, negotiate, translations

BUENOS_AIRES = ZoneInfo("America/Argentina/Buenos_Aires")


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        (None, None, "es"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "fr-FR, en;q=0.5", "en"),
        (None, "fr, de", "es"),
        (None, "en;q=0, es-AR", "es"),
        (None, "es-AR,es;q=0.9,en;q=0.8", "es"),
        ("en", "es-AR", "en"),
        ("xx", "en", "en"),
    ],
)
def test_the_language_is_the_switch_then_the_browser_then_spanish(
    cookie: str | None, accept: str | None, expected: str
) -> None:
    assert negotiate(cookie, accept) == expected


def test_prices_and_dates_read_as_argentines_write_them() -> None:
    spanish, english = PageLocale("es", BUENOS_AIRES), PageLocale("en", BUENOS_AIRES)
    assert spanish.money(Decimal("15000.00"), "ARS") == "$ 15.000"
    assert spanish.money(Decimal("1234.50"), "ARS") == "$ 1.234,50"
    assert english.money(Decimal("15000.00"), "ARS") == "ARS 15,000"
    saturday_night = datetime(2026, 12, 13, 0, 0, tzinfo=UTC)  # 21:00 on Saturday in Buenos Aires
    assert spanish.when(saturday_night) == "sáb 12 dic, 21:00"
    assert english.when(saturday_night) == "Sat 12 Dec, 21:00"
    assert spanish.money_format("ARS") == {"symbol": "$", "group": ".", "decimal": ","}


def test_every_message_has_its_spanish_and_the_catalogs_compile() -> None:
    with (LOCALE_DIR / "messages.pot").open("rb") as source:
        template = read_po(source)
    with (LOCALE_DIR / "es" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        spanish = read_po(source, locale="es")
    wanted = {
        message.id if isinstance(message.id, str) else message.id[0] for message in template if message.id
    }
    untranslated = [
        message.id
        for message in spanish
        if message.id and (not message.string or not all(message.string) or message.fuzzy)
    ]
    known = {
        message.id if isinstance(message.id, str) else message.id[0] for message in spanish if message.id
    }
    assert not untranslated, "run make messages and translate these in es/LC_MESSAGES/messages.po"
    assert wanted <= known, f"not in the Spanish catalog (run make messages): {sorted(wanted - known)}"
    for language in LOCALES:
        assert translations(language).ugettext("Skip to content")
    assert translations("es").ugettext("Skip to content") == "Ir al contenido"


def test_static_addresses_carry_the_contents_version() -> None:
    url = static.static_url("site.css")
    assert url == f"/static/{static.VERSION}/site.css"
    with pytest.raises(KeyError):
        static.static_url("missing.css")


async def test_static_files_are_kept_a_year_under_their_version_only(client: httpx.AsyncClient) -> None:
    current = await client.get(static.static_url("js/format.js"))
    assert current.status_code == 200
    assert current.headers["content-type"].startswith("text/javascript")
    assert current.headers["cache-control"] == "public, max-age=31536000, immutable"
    older = await client.get("/static/0123456789ab/site.css")
    assert (older.status_code, older.headers["cache-control"]) == (200, "public, max-age=60")
    assert (await client.get(f"/static/{static.VERSION}/..%2F..%2Fconfig.py")).status_code == 404
    assert (await client.get(f"/static/{static.VERSION}/nothing.css")).status_code == 404


async def test_the_switch_remembers_the_language_and_only_goes_back_to_this_site(
    client: httpx.AsyncClient,
) -> None:
    switched = await client.get("/lang/en", params={"next": "/events/1?x=2"})
    assert (switched.status_code, switched.headers["location"]) == (303, "/events/1?x=2")
    assert "lang=en" in switched.headers["set-cookie"]
    assert "HttpOnly" in switched.headers["set-cookie"]
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = await client.get("/lang/en", params={"next": elsewhere})
        assert response.headers["location"] == "/"
    unknown = await client.get("/lang/xx", params={"next": "/"})
    assert "set-cookie" not in unknown.headers


async def test_pages_carry_their_language_and_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/orders/1", params={"token": "x"}, headers={"Accept-Language": "en"})
    assert page.status_code == 404
    assert '<html lang="en">' in page.text
    assert "Order not found" in page.text
    assert page.headers["content-language"] == "en"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["cache-control"] == "no-store"
    spanish = await client.get("/orders/1", params={"token": "x"}, headers={"Cookie": "lang=es"})
    assert "Orden no encontrada" in spanish.text
