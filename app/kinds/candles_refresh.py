"""The `candles_refresh` kind: what the rest of the service needs to know about it. Its handler
(the same fetch as `trad candles fetch`, with progress, cancel and checkpoints) is
`app.refresh.job`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.kinds.limits import Limits

if TYPE_CHECKING:
    from app.settings import Settings

NAME = "candles_refresh"
HANDLER = "app.refresh.job:run_refresh_job"


def count_iterations(params: dict[str, Any]) -> None:
    """Unknown until the exchange is asked: the bars to fetch are counted as the job runs."""
    return None


def limits(settings: Settings) -> Limits:
    return Limits(
        settings.candles_refresh_max_attempts,
        settings.candles_refresh_timeout_s,
        settings.candles_refresh_stall_timeout_s,
    )
