"""Errors of the waiting room, with their status and the contract's codes."""

from __future__ import annotations

from ticketera.kit.errors import NotFound, ServiceUnavailable


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("The waiting room cannot be reached right now; keep this page open and retry.")
        self.retry_after = retry_after or 2.0


class QueueFull(ServiceUnavailable):
    code = "queue_full"
    retry_after = 30.0

    def __init__(self) -> None:
        super().__init__("The waiting room is full right now; try again in a little while.")


class NotInQueue(NotFound):
    code = "not_in_queue"

    def __init__(self) -> None:
        super().__init__("This user is not in the waiting room for this event; join again.")
