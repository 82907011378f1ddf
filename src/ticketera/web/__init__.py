"""The pages people use (the shop, the organizer's /admin, the door's /door), served by the
same process as the API.

One layer above every domain and just under `ticketera.main`: a page reads what several domains
know (an event's sections from `events`, a buyer's order and tickets from `orders` and `tickets`),
so it sits where it may call all of their services, as `main` composes all of their routers.
Everything a page author needs is here once: the base layout (`templates/base.html`), the style
sheet (`static/site.css`), the message catalogs and money/date formats (`i18n`), the versioned
static route (`static`), and the rendering helper with the security headers (`rendering`).
"""
