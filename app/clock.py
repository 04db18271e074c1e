"""Timezone-aware now(), so every *_at value is UTC-aware."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
