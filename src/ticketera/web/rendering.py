"""How a page is answered: one Jinja2 environment (autoescaped, the i18n extension), the request's
language, the base layout's context, and the headers every page carries.

A page handler names `page: CurrentPage` in its signature and returns `page.render("x.html", ...)`;
`page.error(...)` answers an error as a page in the same layout. Templates say `{{ _("...") }}` or
`{% trans %}...{% endtrans %}`; the message comes from the request's catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from ticketera.kit.errors import DomainError
from ticketera.kit.http import CurrentSettings
from ticketera.kit.pages import template_environment
from ticketera.web.i18n import LANGUAGE_COOKIE, LANGUAGE_NAMES, LOCALES, PageLocale, negotiate
from ticketera.web.static import static_url

SITE_NAME = "Ticketera"
# Scripts and styles only from this origin, and no inline ones: a value that slipped past escaping
# still could not run. Pages send their data to scripts as JSON in a non-executable <script> block.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        # The door's service worker (/door/sw.js), which opens the page offline.
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


@pass_context
def _gettext(context: Context, message: str) -> str:
    locale: PageLocale = context["locale"]
    return locale.gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int) -> str:
    locale: PageLocale = context["locale"]
    return locale.ngettext(singular, plural, count)


def _page_environment() -> Any:
    environment = template_environment("ticketera.web")
    environment.add_extension("jinja2.ext.i18n")
    # New-style gettext: `_("Hi %(name)s", name=x)` escapes `x` and formats in one step.
    environment.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    environment.globals["static"] = static_url
    environment.globals["site_name"] = SITE_NAME
    environment.filters["json_data"] = _json_data
    return environment


def _json_data(value: Any) -> Markup:
    """A value for a `<script type="application/json">` block: `<`, `>` and `&` escaped so the text
    can never close the block, whatever it holds."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - made safe just above


PAGES = _page_environment()


@dataclass(frozen=True)
class LanguageChoice:
    code: str
    name: str
    url: str
    current: bool


@dataclass(frozen=True)
class Page:
    """One request's page: its language and how to answer it."""

    request: Request
    locale: PageLocale

    def _(self, message: str) -> str:
        return self.locale.gettext(message)

    def languages(self) -> list[LanguageChoice]:
        here = self.request.url.path + (f"?{self.request.url.query}" if self.request.url.query else "")
        return [
            LanguageChoice(
                code, LANGUAGE_NAMES[code], f"/lang/{code}?next={quote(here)}", code == self.language
            )
            for code in LOCALES
        ]

    @property
    def language(self) -> str:
        return self.locale.language

    def render(
        self, template: str, *, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
    ) -> HTMLResponse:
        html = PAGES.get_template(template).render(
            locale=self.locale,
            page=self,
            money=self.locale.money,
            when=self.locale.when,
            **context,
        )
        return HTMLResponse(
            html, status_code=status_code, headers={**page_headers(self.language), **(headers or {})}
        )

    def error(
        self,
        status_code: int,
        title: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """An error answered as a page, in the layout and the buyer's language."""
        return self.render(
            "error.html", status_code=status_code, headers=headers, title=title, message=message, **context
        )


def page_headers(language: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Content-Language": language,
        # The language follows the cookie and the browser's preference: a shared cache must keep them apart.
        "Vary": "Cookie, Accept-Language",
        # Pages show live figures (what is left, a place in line, an order): always asked again.
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


async def current_page(request: Request, settings: CurrentSettings) -> Page:
    language = negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"))
    return Page(request, PageLocale(language, settings.zone))


CurrentPage = Annotated[Page, Depends(current_page)]


class PageAnswer(Exception):
    """An answer a page's dependency gives before the handler runs (the login page for a visitor
    without a session, a refused form): raised, so every handler that names the dependency is
    covered without checking for it; `create_app` installs `answer_early` to send it."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def answer_early(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageAnswer)
    return exc.response


def problem_page(page: Page, error: DomainError, *, back_url: str = "/") -> HTMLResponse:
    """A domain error as a page: the buyer reads what happened and what to do, in their language;
    the status code stays the API's, and so does Retry-After."""
    _ = page._
    if error.status_code == 404:
        title, message = (
            _("Not found"),
            _("What you are looking for does not exist or is no longer available."),
        )
    elif error.status_code == 503:
        title = _("We are very busy")
        message = _("We cannot answer right now. Wait a few seconds and try again: nothing you did was lost.")
    elif error.status_code == 429:
        title, message = _("Too many requests"), _("Wait a few seconds and try again.")
    else:
        title, message = _("Something went wrong"), _("Try again in a moment.")
    headers = {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after else None
    return page.error(error.status_code, title, message, back_url=back_url, headers=headers)
