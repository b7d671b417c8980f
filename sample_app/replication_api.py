"""The peer-to-peer endpoints of the replication strategy. Not for clients: the load balancer refuses /_replication/."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .stores.replicated import AUTH_HEADER, ReplicatedStore


def replication_routes(store: ReplicatedStore) -> list[Route]:
    async def authenticated_body(request: Request) -> bytes | Response:
        body = await request.body()
        refused = store.refusal(request.method, request.url.path, body, request.headers.get(AUTH_HEADER, ""))
        if refused is not None:
            status, code, message = refused
            return JSONResponse({"error": code, "message": message}, status_code=status)
        return body

    def merging(merge):
        async def endpoint(request: Request) -> Response:
            body = await authenticated_body(request)
            if isinstance(body, Response):
                return body
            try:
                count = merge(json.loads(body))
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
                return JSONResponse(
                    {"error": "invalid_deltas", "message": f"{type(error).__name__}: {error}"}, status_code=400
                )
            return JSONResponse({"applied": count})

        return endpoint

    async def snapshot(request: Request) -> Response:
        body = await authenticated_body(request)
        if isinstance(body, Response):
            return body
        return JSONResponse(store.snapshot())

    async def status(request: Request) -> Response:
        return JSONResponse(store.status())

    return [
        Route("/_replication/deltas", merging(store.apply), methods=["POST"]),
        Route("/_replication/merge", merging(store.merge_snapshot), methods=["POST"]),
        Route("/_replication/snapshot", snapshot, methods=["POST"]),
        Route("/_replication/status", status, methods=["GET"]),
    ]
