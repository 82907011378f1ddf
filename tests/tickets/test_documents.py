"""What buyers read: times in the venue's zone, not the server's."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import make_settings
from ticketera.tickets.documents import local_time

BUENOS_AIRES = ZoneInfo("America/Argentina/Buenos_Aires")


def test_a_late_show_is_printed_on_its_own_day_in_the_venues_zone() -> None:
    # 00:30 UTC on New Year's Day is still 21:30 on New Year's Eve in Buenos Aires.
    assert local_time(datetime(2031, 1, 1, 0, 30, tzinfo=UTC), BUENOS_AIRES) == "31/12/2030 21:30 (-03)"


def test_an_unknown_zone_stops_start_up(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="display_timezone"):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, display_timezone="Mars/Olympus")  # type: ignore[arg-type]
