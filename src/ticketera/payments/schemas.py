"""Response bodies of payments."""

from __future__ import annotations

from ticketera.kit.schemas import ApiOutput


class NotificationReceived(ApiOutput):
    received: bool
    # False: a notification we do not act on; None: stored, processed after this answer.
    processed: bool | None
