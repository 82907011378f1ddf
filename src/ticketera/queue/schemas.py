"""Request and response bodies of the waiting room."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from ticketera.kit.schemas import ApiInput, ApiOutput, Given, printable_text

if TYPE_CHECKING:
    from ticketera.queue.service import QueueStats, QueueStatus

USER_ID_TEXT = printable_text(not_first="~")

# A user id is the organizer's own account id: printable, at most 128 characters, and never
# starting with `~`, which marks the anonymous identities the waiting room gives newcomers.
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=USER_ID_TEXT)]
UserAssertion = Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]


class JoinRequest(ApiInput):
    """Who joins: nobody in particular (a newcomer), or a `userId` the organizer's site vouches for
    with a `userAssertion`. A `userId` alone is a label: it proves nothing and gets a place of its own."""

    # `_assertion_names_a_user`'s rule, for the document.
    model_config = ConfigDict(json_schema_extra={"dependentRequired": {"userAssertion": ["userId"]}})

    user_id: Given[UserId] = None
    user_assertion: Given[UserAssertion] = None
    # Free-form details the client shows back to the user; kept out of the line itself.
    user_info: dict[str, Any] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _assertion_names_a_user(self) -> JoinRequest:
        if self.user_assertion is not None and self.user_id is None:
            raise ValueError("a userAssertion vouches for a userId: send both")
        return self


class QueueStatusOut(ApiOutput):
    status: str
    position: int | None
    ahead: int | None
    eta_seconds: int | None = Field(
        description="Seconds until the user's turn, estimated from the admission rate; null while the"
        " line is paused (no estimate holds) and after admission"
    )
    pre_queue: bool = False
    access_token: str | None = None
    access_expires_at: datetime | None = None
    paused: bool = Field(
        default=False,
        description="The organizer paused admission to this line: the place is kept, nobody is let in"
        " until it resumes, and etaSeconds is null",
    )

    check_again_seconds: int | None = Field(
        default=None,
        description="While waiting: when to ask for the place again (the stream pushes at this pace"
        " too). Soon near the front, up to a minute far back; never later than the turn could come",
    )

    @classmethod
    def of(cls, queue_status: QueueStatus) -> QueueStatusOut:
        return cls(
            status=queue_status.status,
            position=queue_status.position,
            ahead=queue_status.ahead,
            eta_seconds=queue_status.eta_seconds,
            pre_queue=queue_status.pre_queue,
            access_token=queue_status.access_token,
            access_expires_at=queue_status.access_expires_at,
            paused=queue_status.paused,
            check_again_seconds=queue_status.check_again_seconds,
        )


class JoinOut(QueueStatusOut):
    queue_token: str


class QueueStatsOut(ApiOutput):
    event_id: int
    enabled: bool
    paused: bool
    waiting: int
    pre_queue: int
    admitted: int
    active_shoppers: int
    admit_per_minute: int
    max_active_shoppers: int
    measured_admit_per_minute: int
    released: bool
    backend: str

    @classmethod
    def of(cls, stats: QueueStats) -> QueueStatsOut:
        settings, figures = stats.settings, stats.figures
        return cls(
            event_id=settings.event_id,
            enabled=settings.enabled,
            paused=settings.paused,
            waiting=figures.waiting,
            pre_queue=figures.prequeue,
            admitted=figures.admitted_total,
            active_shoppers=figures.active,
            admit_per_minute=settings.admit_per_minute,
            max_active_shoppers=settings.max_active_shoppers,
            measured_admit_per_minute=figures.admitted_last_minute,
            released=figures.released,
            backend=stats.backend,
        )
