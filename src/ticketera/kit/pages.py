"""Server-rendered pages: one Jinja2 environment per package's `templates/` folder, autoescaped.

Autoescape is on for every template, so a value shown on a page (a buyer's name, an event's title)
can never become markup; `StrictUndefined` turns a misspelt variable into an error instead of an
empty string.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


def template_environment(package: str) -> Environment:
    """The templates in `<package>/templates/`, built once per module that renders pages."""
    return Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(environment: Environment, name: str, **context: Any) -> str:
    return environment.get_template(name).render(**context)
