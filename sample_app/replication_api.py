"""The peer-to-peer endpoints of the replication strategy. Not for clients: the load balancer refuses /_replication/."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .stores.replicated import AUTH_HEADER, ReplicatedStore, verify


def replication_routes(store: ReplicatedStore) -> list[Route]:
    async def authenticated_body(request: Request) -> bytes | Response:
        body = await request.body()
        if not verify(store.key, request.method, request.url.path, body, request.headers.get(AUTH_HEADER, "")):
            return JSONResponse({"error": "unauthenticated", "message": "bad or missing replication signature"},
                                status_code=401)
        return body

    async def deltas(request: Request) -> Response:
        body = await authenticated_body(request)
        if isinstance(body, Response):
            return body
        try:
            batch = json.loads(body)
            store.apply(batch)
        except (ValueError, KeyError, TypeError) as error:
            return JSONResponse({"error": "invalid_deltas", "message": str(error)}, status_code=400)
        return JSONResponse({"applied": len(batch)})

    async def snapshot(request: Request) -> Response:
        body = await authenticated_body(request)
        if isinstance(body, Response):
            return body
        return JSONResponse(store.snapshot())

    async def status(request: Request) -> Response:
        return JSONResponse(store.status())

    return [
        Route("/_replication/deltas", deltas, methods=["POST"]),
        Route("/_replication/snapshot", snapshot, methods=["POST"]),
        Route("/_replication/status", status, methods=["GET"]),
    ]
