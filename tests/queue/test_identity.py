"""The signed statements of the organizer's site that a user is who it says."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from ticketera.queue.identity import (
    InvalidUserAssertion,
    UserAssertions,
    anonymous_identity,
    is_anonymous,
)

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "organizer-shared-secret"


def test_an_assertion_signed_for_a_user_is_accepted_for_that_user_only() -> None:
    assertions = UserAssertions(SECRET)
    assertion = assertions.sign("ana", NOW + timedelta(minutes=5))

    assertions.verify("ana", assertion, now=NOW)
    with pytest.raises(InvalidUserAssertion, match="not signed for this user"):
        assertions.verify("beto", assertion, now=NOW)
    with pytest.raises(InvalidUserAssertion, match="not signed for this user"):
        UserAssertions("another-secret").verify("ana", assertion, now=NOW)


def test_the_documented_recipe_makes_a_valid_assertion() -> None:
    """What the README tells an organizer's site to compute, written out independently."""
    expires = int((NOW + timedelta(minutes=5)).timestamp())
    message = f"ticketera.user-assertion.v1|ana|{expires}".encode()
    signature = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest())

    UserAssertions(SECRET).verify("ana", f"v1.{expires}.{signature.rstrip(b'=').decode()}", now=NOW)


@pytest.mark.parametrize(
    ("expires_in", "reason"),
    [
        (timedelta(seconds=0), "expired"),
        (timedelta(hours=-1), "expired"),
        (timedelta(days=1, seconds=1), "longer than a day"),
    ],
)
def test_assertions_live_briefly(expires_in: timedelta, reason: str) -> None:
    assertions = UserAssertions(SECRET)

    with pytest.raises(InvalidUserAssertion, match=reason):
        assertions.verify("ana", assertions.sign("ana", NOW + expires_in), now=NOW)


@pytest.mark.parametrize("given", ["", "v1..x", "v2.1893499200." + "A" * 43, "v1.1893499200." + "A" * 44])
def test_malformed_assertions_are_refused(given: str) -> None:
    with pytest.raises(InvalidUserAssertion, match="malformed"):
        UserAssertions(SECRET).verify("ana", given, now=NOW)


def test_without_a_shared_secret_no_assertion_is_accepted() -> None:
    assertion = UserAssertions(SECRET).sign("ana", NOW + timedelta(minutes=5))

    with pytest.raises(InvalidUserAssertion, match="USER_ASSERTION_SECRET"):
        UserAssertions(None).verify("ana", assertion, now=NOW)


def test_anonymous_identities_are_unguessable_and_marked() -> None:
    identities = {anonymous_identity() for _ in range(1000)}

    assert len(identities) == 1000
    assert all(is_anonymous(identity) and len(identity) == 23 for identity in identities)
    assert not is_anonymous("ana")
