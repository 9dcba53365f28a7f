"""The HTTP endpoints: they translate requests into calls on the job slot, and results into answers.

Every endpoint is ``async`` and does no blocking work, so that the probes answer at once even
while a generation holds its thread.

No ``from __future__ import annotations`` here, unlike everywhere else: dependency-injector
finds its ``Provide`` markers in the parameters' ``Annotated`` types at decoration time, and
string annotations would hide them (the endpoints would silently get the marker itself).
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from fastwan_adapters.logs import bind_job
from fastwan_core import ErrorCode, JobResult, result_to_wire
from queue_worker.body import BodyTimeout, BodyTooLarge, NotJson, check_declared, read_body, safe_header
from queue_worker.containers import Container
from queue_worker.metrics import CONTENT_TYPE_LATEST, QueueMetrics
from queue_worker.readiness import Readiness, WorkerState
from queue_worker.schema import generate_openapi, generate_responses
from queue_worker.slot import JobSlot, Rejection
from queue_worker.status_codes import (
    BODY_TIMEOUT,
    CLIENT_CLOSED_REQUEST,
    NOT_JSON,
    PAYLOAD_TOO_LARGE,
    http_status,
)

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()


@router.post(
    "/generate",
    summary="Run one job (Salad's job-queue binary posts here)",
    openapi_extra=generate_openapi(),
    responses=generate_responses(),
)
@inject
async def generate(
    request: Request,
    slot: Annotated[JobSlot, Depends(Provide[Container.slot])],
    metrics: Annotated[QueueMetrics, Depends(Provide[Container.metrics])],
    body_timeout_s: Annotated[float, Depends(Provide[Container.settings.provided.body_timeout_s])],
) -> Response:
    """Run the job in the body; the status code tells Salad whether to retry (see ``docs/salad.md``).

    Everything that can be judged from the headers and the worker's state (the declared size
    and type, readiness, the one job slot) is judged before a byte of the body is read, so that
    a refused job is answered at once and never held in memory.
    """
    with bind_job(None, salad_job_id=safe_header(request.headers.get("salad-job-id"))):
        try:
            check_declared(request)
        except BodyTooLarge as error:
            metrics.job_rejected("too_large")
            return _answer(JobResult.failure(ErrorCode.INVALID_INPUT, str(error)), PAYLOAD_TOO_LARGE)
        except NotJson as error:
            metrics.job_rejected("not_json")
            return _answer(JobResult.failure(ErrorCode.INVALID_INPUT, str(error)), NOT_JSON)
        rejection = slot.admit()
        if rejection is not None:
            log.info("job refused (%s): %s", rejection.reason, rejection.result.error)
            return _answer(rejection.result, rejection.status)
        body = await _read_admitted(request, slot, metrics, body_timeout_s)
        if isinstance(body, Response):
            return body
        result = await slot.run(body, caller_gone=_caller_gone(request))
        status = http_status(result)
        with bind_job(result.job_id):
            code = f" ({result.error_code.value})" if result.error_code else ""
            log.info("job answered %d: %s%s", status, result.status.value, code)
        return _answer(result, status)


async def _read_admitted(
    request: Request, slot: JobSlot, metrics: QueueMetrics, timeout_s: float
) -> bytes | Response:
    """The admitted job's body, or the answer when it cannot be read (the slot given back)."""
    try:
        return await read_body(request, timeout_s=timeout_s)
    except BodyTooLarge as error:
        slot.withdraw()
        metrics.job_rejected("too_large")
        return _answer(JobResult.failure(ErrorCode.INVALID_INPUT, str(error)), PAYLOAD_TOO_LARGE)
    except BodyTimeout as error:
        slot.withdraw()
        metrics.job_rejected("body_timeout")
        log.info("job refused (body_timeout): %s", error)
        rejection = Rejection.of(BODY_TIMEOUT, "body_timeout", str(error))
        return _answer(rejection.result, rejection.status)
    except ClientDisconnect:
        slot.withdraw()
        log.info("the caller left before sending the whole job")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except BaseException:  # cancelled (the server is stopping): the slot must not stay taken
        slot.withdraw()
        raise


@router.get("/health", summary="Liveness: 200 while the process serves, 503 once it cannot go on")
@inject
async def health(
    readiness: Annotated[Readiness, Depends(Provide[Container.readiness])],
    slot: Annotated[JobSlot, Depends(Provide[Container.slot])],
) -> JSONResponse:
    failed = readiness.state is WorkerState.FAILED
    body: dict[str, object] = {
        "status": "failed" if failed else "ok",
        **readiness.describe(),
        "busy": slot.busy,
    }
    if slot.job_id is not None:
        body["job_id"] = slot.job_id
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/ready", summary="Readiness: 200 once the model is loaded and warmed up, else 503")
@inject
async def ready(readiness: Annotated[Readiness, Depends(Provide[Container.readiness])]) -> JSONResponse:
    return JSONResponse(readiness.describe(), status_code=200 if readiness.is_ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
@inject
async def prometheus(metrics: Annotated[QueueMetrics, Depends(Provide[Container.metrics])]) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _answer(result: JobResult, status: int) -> JSONResponse:
    return JSONResponse(result_to_wire(result), status_code=status)


def _caller_gone(request: Request) -> Callable[[], Awaitable[None]]:
    """Returns when the client disconnects (the body is already read, so nothing else arrives)."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait
