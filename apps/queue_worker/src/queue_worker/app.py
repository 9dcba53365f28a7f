"""The FastAPI app: routes, the outputs folder, and the start-up and shutdown of the worker.

The lifespan opens what works on uvicorn's event loop (the orchestrator client, the progress
sender, SaladCloud's deletion cost), starts the model's load and returns at once, so that
uvicorn listens from the first second; at shutdown (after uvicorn has let the job in hand
finish, see :mod:`queue_worker.server`) it sends the last progress updates and closes what the
adapters hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from fastwan_adapters.container import on_the_loop
from queue_worker import routes
from queue_worker.containers import Container
from queue_worker.outputs import FinishedVideos

__all__ = ["create_app"]


def create_app(container: Container) -> FastAPI:
    """The app, wired to ``container`` (whose ``settings`` must be set)."""
    settings = container.settings()
    app = FastAPI(
        title="FastWan queue worker",
        version=settings.worker_version,
        summary="SaladCloud queue mode: one video-generation job per POST /generate.",
        lifespan=_lifespan(container),
    )
    app.state.container = container
    app.include_router(routes.router)
    if settings.local_store is not None:
        # The embedded default: videos stay on this machine and are fetched from here.
        app.mount("/outputs", FinishedVideos(settings.local_store.directory), name="outputs")
    container.wire(modules=[routes])
    return app


def _lifespan(container: Container) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with on_the_loop(container.orchestrator(), container.sender(), container.deletion_cost()):
            container.slot().attach(asyncio.get_running_loop())
            loading = asyncio.create_task(container.loader().load())
            try:
                yield
            finally:
                loading.cancel()
                container.jobs().close()
        container.shutdown_resources()
        container.unwire()

    return lifespan
