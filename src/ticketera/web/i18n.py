"""Languages of the pages: Babel message catalogs, Spanish first (as Argentines write it), English.

The catalogs are the `.po` files under `locale/`; each process compiles them in memory the first
time a language is asked for (a few milliseconds), so there is no compiled `.mo` to forget to
rebuild or commit, and a fresh clone serves both languages with nothing generated. `make messages`
extracts new strings, updates the catalogs and checks that they compile.

Money and dates are formatted here and nowhere else: pages call `PageLocale.money` and
`PageLocale.when`, and the scripts receive `money_format` (the same symbols and grouping) so a total
they compute reads exactly like a price the server wrote.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, get_currency_symbol
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
DEFAULT_LANGUAGE = "es"
# The language a page is shown in, and the Babel locale that formats its numbers and dates: Spanish
# as written in Argentina (`$ 15.000`, `sáb 12 dic, 21:00`).
LOCALES = {"es": Locale.parse("es_AR"), "en": Locale.parse("en")}
LANGUAGE_NAMES = {"es": "Español", "en": "English"}
LANGUAGE_COOKIE = "lang"
# Prices without cents when there are none, as ticket prices are written in Argentina.
WHOLE_MONEY = "¤ #,##0"
MONEY_WITH_CENTS = "¤ #,##0.00"
SHORT_MOMENT = "EEE d MMM, HH:mm"
LONG_MOMENT = "EEEE d 'de' MMMM, HH:mm"
LONG_MOMENT_EN = "EEEE, d MMMM, HH:mm"


@functools.cache
def translations(language: str) -> Translations:
    """The catalog of `language`, compiled from its `.po` once per process."""
    with (LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The page's language: the switch's cookie, else the browser's preference, else Spanish."""
    if cookie in LOCALES:
        return cookie
    for language in _preferences(accept_language or ""):
        if language in LOCALES:
            return language
    return DEFAULT_LANGUAGE


def _preferences(header: str) -> list[str]:
    """The primary languages of an Accept-Language header, most wanted first (`q=0` dropped)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary and quality > 0:
            weighted.append((-quality, position, primary))
    return [language for _, _, language in sorted(weighted)]


@dataclass(frozen=True)
class PageLocale:
    """One request's language, with the formats that go with it."""

    language: str
    zone: tzinfo

    @property
    def babel(self) -> Locale:
        return LOCALES[self.language]

    def gettext(self, message: str) -> str:
        return translations(self.language).ugettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return translations(self.language).ungettext(singular, plural, count)

    def money(self, amount: Decimal | int | str, currency: str) -> str:
        value = Decimal(amount)
        pattern = WHOLE_MONEY if value == value.to_integral_value() else MONEY_WITH_CENTS
        return format_currency(value, currency, format=pattern, locale=self.babel, currency_digits=False)

    def money_format(self, currency: str) -> dict[str, Any]:
        """What the scripts need to write money as `money` does (see static/js/format.js)."""
        symbols = self.babel.number_symbols["latn"]
        return {
            "symbol": get_currency_symbol(currency, self.babel),
            "group": symbols["group"],
            "decimal": symbols["decimal"],
        }

    def when(self, moment: datetime) -> str:
        """A short moment in the venue's zone: `sáb 12 dic, 21:00`."""
        return format_datetime(moment.astimezone(self.zone), SHORT_MOMENT, locale=self.babel)

    def when_long(self, moment: datetime) -> str:
        pattern = LONG_MOMENT if self.language == "es" else LONG_MOMENT_EN
        return format_datetime(moment.astimezone(self.zone), pattern, locale=self.babel)

    def time_of_day(self, moment: datetime) -> str:
        return format_datetime(moment.astimezone(self.zone), "HH:mm", locale=self.babel)
