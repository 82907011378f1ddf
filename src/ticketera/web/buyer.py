"""The buyer's pages: upcoming events, an event, the waiting room, choosing seats."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
