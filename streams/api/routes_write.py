"""Desired state: ``GET/PUT /api/batteries/{id}/desired`` and the seed's
``POST /api/battery/configure``. Writes need an API key and have their own rate limit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from streams.api.desired import CommandRefusedError
from streams.api.routes_read import BatteryId, require_battery, state
from streams.api.schemas import ConfigureRequest, DesiredState, DesiredStateView
from streams.api.security import retry_after

router = APIRouter(prefix="/api")
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong API key."},
    404: {"description": "Unknown battery."},
    429: {"description": "Rate limit exceeded (see Retry-After)."},
    503: {"description": "The broker did not take the command; nothing was changed."},
}


def api_key(request: Request) -> str:
    """The request's API key (``X-API-Key`` or ``Authorization: Bearer``): 401 unless it is one of
    ``EVTWIN_API_KEYS``; 429 past the write rate limit of that key."""
    st = state(request)
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization") or ""
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not st.keys.check(key):
        raise HTTPException(401, "a valid API key is needed (header X-API-Key)",
                            headers={"WWW-Authenticate": "Bearer"})
    import hashlib

    wait = st.write_limiter.take("key:" + hashlib.sha256((key or "").encode()).hexdigest()[:16])
    if wait > 0:
        raise HTTPException(429, "write rate limit exceeded; retry later",
                            headers={"Retry-After": retry_after(wait)})
    return key or ""


Authorized = Annotated[str, Depends(api_key)]


async def _put(request: Request, battery_id: str, desired: DesiredState) -> DesiredStateView:
    await require_battery(request, battery_id)
    try:
        return await state(request).desired.put(battery_id, desired)  # type: ignore[no-any-return]
    except CommandRefusedError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None


@router.get("/batteries/{battery_id}/desired", response_model=DesiredStateView,
            responses={404: {"description": "Unknown battery."}},
            summary="Desired vs reported state of one pack, and when they converged")
async def get_desired(request: Request, battery_id: BatteryId) -> DesiredStateView:
    await require_battery(request, battery_id)
    return await state(request).desired.get(battery_id)  # type: ignore[no-any-return]


@router.put("/batteries/{battery_id}/desired", response_model=DesiredStateView,
            responses=_WRITE_ERRORS, summary="Set the desired state of one pack (API key)")
async def put_desired(request: Request, battery_id: BatteryId, body: DesiredState,
                      _key: Authorized) -> DesiredStateView:
    return await _put(request, battery_id, body)


@router.post("/battery/configure", response_model=DesiredStateView, responses=_WRITE_ERRORS,
             summary="Set the desired state of one pack (the seed's path; API key)")
async def configure(request: Request, body: ConfigureRequest, _key: Authorized) -> DesiredStateView:
    desired = DesiredState(**body.model_dump(exclude={"battery_id"}))
    return await _put(request, body.battery_id, desired)
