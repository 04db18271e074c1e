"""/api/v2/candles: the stored candles, and refreshing them from an exchange (a
`candles_refresh` job, listed, followed, canceled and retried with the other jobs)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.api import presenters
from app.api.deps import CommitDep, SessionDep, SettingsDep
from app.api.errors import responses
from app.api.routes.training import IdempotencyKey
from app.api.routes.training import router as training_router
from app.api.schemas import CandleSeries, CandleSeriesPage, RefreshCandles, StartAccepted
from app.services import candle_refresh

router = APIRouter(prefix="/api/v2/candles", tags=["candles"], responses=responses(401, 500, 503))


@router.get("", response_model=CandleSeriesPage)
def list_candles(session: SessionDep) -> CandleSeriesPage:
    """Each stored symbol and timeframe: its range, bar count, sources and last refresh."""
    items = [CandleSeries(**vars(series)) for series in candle_refresh.stored_series(session)]
    return CandleSeriesPage(items=items)


@router.post(
    "/refresh",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
    responses={
        200: {"model": StartAccepted, "description": "replay of an earlier request with the same Idempotency-Key"},
        **responses(400, 409, 413, 422, 429),
    },
)
def refresh_candles(
    body: RefreshCandles,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    commit: CommitDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Fetch candles from an exchange in a worker: a `candles_refresh` job, committed before it
    is enqueued. The exchange, timeframe and range are checked now (422 naming the field); a
    symbol the exchange does not list fails the job with `UnknownSymbol`, without retries."""
    params = candle_refresh.job_params(
        session,
        exchange=body.exchange,
        symbol=body.symbol,
        timeframe=body.timeframe,
        since=body.since,
        until=body.until,
        store_as=body.store_as,
    )
    result = candle_refresh.start(session, settings, params, priority=body.priority, idempotency_key=idempotency_key)
    commit()
    view = presenters.progress_fields(result.row)
    accepted = StartAccepted(
        **view, progress_url=f"{request.base_url}{training_router.prefix.lstrip('/')}/jobs/{result.row.id}/progress"
    )
    code = status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK
    return Response(accepted.model_dump_json(), status_code=code, media_type="application/json")
