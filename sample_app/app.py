"""The HTTP contract, the same for every strategy (docs/sample-app.md).

Only this module speaks HTTP; the stores only know handles and sessions. Every error is JSON:
{"error": CODE, "message": TEXT}, 4xx for what the client sent, 503 when the store cannot serve.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match, Route

from . import openapi, page
from .settings import Settings
from .stores import build_store
from .stores.base import Change, Rejected, Session, StoreUnavailable
from .stores.signed_cookie import COOKIE_NAME, MAX_COOKIE_BYTES

log = logging.getLogger("sample_app")

USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
DATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ClientError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- what a JSON body may hold ----------------------------------------------------------------------------------
# A body is accepted when it is UTF-8 JSON whose value every store and the response encoder give back unchanged:
# no NaN or Infinity (nor numbers too large for a float, which Python reads as inf), containers nested at most
# MAX_DEPTH deep, and no string (object keys included) holding NUL or an unpaired surrogate (PostgreSQL refuses the
# first, UTF-8 cannot encode the second). Anything else is refused with a 400 before any store is touched.

MAX_DEPTH = 32
# A string token (escapes included), or one bracket. Each character matches one way only: no backtracking blow-up.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def invalid_value(message: str) -> ClientError:
    return ClientError(400, "invalid_value", message)


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH, found by scanning, never by recursing
    (json.loads recurses: a few thousand `[` would exhaust the stack)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise invalid_value(f"{name} is not a JSON number: numbers must be finite")


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise invalid_value("strings (object keys included) must not contain NUL (\\u0000)")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid_value("strings (object keys included) must not contain unpaired surrogates") from None


def parse_json(body: bytes) -> Any:
    """The value of a request body, if the app accepts it (see above); a ClientError (400) names what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ClientError(400, "invalid_json", "the request body must be valid JSON in UTF-8") from None
    if _too_deep(text):
        raise ClientError(400, "too_deep", f"JSON may nest arrays and objects at most {MAX_DEPTH} deep")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise ClientError(400, "invalid_json", "the request body must be valid JSON in UTF-8") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise invalid_value("an integer has too many digits") from None
    pending = [value]  # a walk with a stack, not recursion: the depth is bounded, but never trust that twice
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise invalid_value("numbers must be finite (a number too large for a float reads as Infinity)")
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            for key, member in item.items():
                _check_string(key)
                pending.append(member)
    return value


_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class JSONAnswer(JSONResponse):
    """Starlette's JSONResponse, the same bytes, with one encoder made once: json.dumps with Starlette's options
    (not the defaults) builds a new JSONEncoder for every response, about 1 us of each."""

    def render(self, content: Any) -> bytes:
        return _encode_json(content).encode("utf-8")


def header(request: Request, name: bytes) -> str:
    """The first value of a header (name in lower case, as the ASGI scope has it), or "". request.headers builds a
    Headers object for every request, about 1 us, to read the one header a session request needs."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONAnswer({"error": code, "message": message}, status_code=status, headers=headers)


def session_cookie(header: str) -> str | None:
    """The SESSION cookie's value from a Cookie header, or None.

    Starlette's request.cookies parses every cookie into a dict, which cost about 15 us a request here, more than
    a Redis round trip: this finds the one cookie the app reads. The last SESSION cookie wins, as in request.cookies.
    """
    found = None
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip() == COOKIE_NAME:
            found = value.strip().strip('"')
    return found


def no_session() -> ClientError:
    # A new instance each time: raising one shared instance grows its __traceback__ on every raise.
    return ClientError(401, "no_session", "no valid session: log in first")


def create_app(settings: Settings) -> Starlette:
    strategy, store = build_store(settings)
    node, bearer = settings.node_name, strategy.carrier == "bearer"
    if strategy.name == "replication":
        store.mode, store.timeout = settings.replication_mode, settings.replication_timeout_ms / 1000
    # Cookie routing (like Tomcat's jvmRoute): a SESSION cookie this node sets ends in ".ROUTE", by which the load
    # balancer sends the session back here. Ids never hold a ".", so every node strips a mark, routing on or off
    # (turning it off keeps the sessions); not the signed cookie, whose value is not an id.
    routable = strategy.name != "cookie"
    route = f".{settings.session_route}" if settings.session_route and routable else ""

    # -- the handle: where the client carries it -------------------------------------------------------------------

    def handle_of(request: Request) -> str | None:
        if bearer:
            scheme, _, token = header(request, b"authorization").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
        value = session_cookie(header(request, b"cookie"))
        if value and routable:
            value = value.partition(".")[0]
        return value if value and len(value) <= MAX_COOKIE_BYTES else None

    def required_handle(request: Request) -> str:
        handle = handle_of(request)
        if handle is None:
            raise no_session()
        return handle

    # Starlette's set_cookie goes through http.cookies; the attributes never change, so the header is built here.
    cookie_attributes = "; HttpOnly; Path=/; SameSite=lax" + ("; Secure" if settings.cookie_secure else "")

    def with_cookie(response: Response, value: str, extra: str = "") -> Response:
        if value and route:
            value += route
        if not bearer:
            response.raw_headers.append((b"set-cookie", f"{COOKIE_NAME}={value}{extra}{cookie_attributes}".encode()))
        return response

    def respond(body: dict[str, Any], handle: str | None = None, status: int = 200) -> JSONResponse:
        response = JSONAnswer(body, status_code=status)
        return response if handle is None else with_cookie(response, handle)

    def expire_cookie(response: Response) -> Response:
        return with_cookie(response, "", "; Max-Age=0")

    def body_too_large() -> ClientError:
        return ClientError(413, "body_too_large", f"request bodies are limited to {settings.max_body_bytes} bytes")

    async def body_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (
            not (declared.isascii() and declared.isdigit()) or int(declared) > settings.max_body_bytes
        ):
            raise body_too_large()
        chunks, size = [], 0
        async for chunk in request.stream():  # a chunked body declares no length: count it as it comes
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise body_too_large()
            chunks.append(chunk)
        return parse_json(b"".join(chunks))

    def data_key(request: Request) -> str:
        key = request.path_params["key"]
        if not DATA_KEY.fullmatch(key):
            raise ClientError(400, "invalid_key", "a data key is 1-64 characters of A-Z a-z 0-9 _ . -")
        return key

    def changed(change: Change | None) -> Change:
        if change is None:
            raise no_session()
        return change

    # -- endpoints ----------------------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        return HTMLResponse(page.render(node=node, strategy=strategy.name, bearer=bearer))

    async def ping(request: Request) -> Response:
        return JSONAnswer({"node": node})

    async def healthz(request: Request) -> Response:
        try:
            await store.ping()
        except StoreUnavailable as error:
            return JSONAnswer(
                {
                    "status": "unavailable",
                    "node": node,
                    "strategy": strategy.name,
                    "error": "store_unavailable",
                    "message": str(error),
                },
                status_code=503,
            )
        return JSONAnswer({"status": "ok", "node": node, "strategy": strategy.name})

    async def login(request: Request) -> Response:
        body = await body_json(request)
        user = body.get("username") if isinstance(body, dict) else None
        if not isinstance(user, str) or not USERNAME.fullmatch(user):
            raise ClientError(
                400, "invalid_username", 'send {"username": NAME}, 1-64 characters of A-Z a-z 0-9 _ . @ -'
            )
        # Fixation protection: a session the client already holds moves to a new id (or ends, for another user).
        old = handle_of(request)
        handle = await store.rotate(old, user) if old else None
        if handle is None:
            handle = await store.create(Session(user=user))
        result = {"user": user, "node": node}
        if bearer:
            result["token"] = handle
        return respond(result, handle)

    async def read_session(request: Request) -> Response:
        session = await store.load(required_handle(request))
        if session is None:
            raise no_session()
        return respond(
            {
                "user": session.user,
                "node": node,
                "strategy": strategy.name,
                "counter": session.counter,
                "data": session.data,
            },
            session.renewed_handle,
        )

    async def increment(request: Request) -> Response:
        change = changed(await store.increment(required_handle(request)))
        return respond({"counter": change.value, "node": node}, change.handle)

    async def put_data(request: Request) -> Response:
        handle, key = required_handle(request), data_key(request)
        value = await body_json(request)
        if len(json.dumps(value)) > settings.max_value_bytes:
            raise ClientError(
                413, "value_too_large", f"a data value is limited to {settings.max_value_bytes} bytes of JSON"
            )
        change = changed(await store.set_data(handle, key, value))
        return respond({"key": key, "stored": True, "node": node}, change.handle)

    async def delete_data(request: Request) -> Response:
        handle, key = required_handle(request), data_key(request)
        change = changed(await store.delete_data(handle, key))
        return respond({"key": key, "deleted": change.value, "node": node}, change.handle)

    async def logout(request: Request) -> Response:
        handle = required_handle(request)
        if await store.load(handle) is None:
            raise no_session()
        await store.destroy(handle)
        return expire_cookie(JSONAnswer({"status": "logged_out", "node": node}))

    async def logout_all(request: Request) -> Response:
        handle = required_handle(request)
        session = await store.load(handle)
        if session is None:
            raise no_session()
        ended = await store.destroy_all(session.user)
        return expire_cookie(JSONAnswer({"status": "logged_out", "sessions_ended": ended, "node": node}))

    # Starlette tries routes in order: the hot paths first (the no-session baseline before them, so that it is
    # never the slower for its place in the list).
    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/session", read_session, methods=["GET"]),
        Route("/session/counter", increment, methods=["POST"]),
        Route("/session/data/{key}", put_data, methods=["PUT"]),
        Route("/session/data/{key}", delete_data, methods=["DELETE"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/logout/all", logout_all, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ]
    if hasattr(store, "apply"):
        from .replication_api import replication_routes

        routes += replication_routes(store)
    contract = JSONAnswer(openapi.document(settings, bearer, hasattr(store, "apply"), MAX_DEPTH)).body

    async def openapi_document(request: Request) -> Response:
        return Response(contract, media_type="application/json")

    routes.append(Route("/openapi.json", openapi_document, methods=["GET"]))

    async def client_error(request: Request, error: ClientError) -> Response:
        return error_response(error.status, error.code, error.message)

    async def rejected(request: Request, error: Rejected) -> Response:
        return error_response(error.status, error.code, error.message)

    async def unavailable(request: Request, error: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", error)
        return error_response(503, "store_unavailable", "the session store is unavailable; try again")

    async def http_error(request: Request, error: HTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        headers = error.headers
        if error.status_code == 405:  # Starlette names the methods of the first route on the path; list them all
            allowed = {
                method
                for route in routes
                if route.matches(request.scope)[0] is Match.PARTIAL
                for method in route.methods
            }
            headers = {"Allow": ", ".join(sorted(allowed))}
        return error_response(error.status_code, codes.get(error.status_code, "http_error"), str(error.detail), headers)

    async def server_error(request: Request, error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "unexpected server error")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await store.start()
        log.info("node %s serving strategy %s", node, strategy.name)
        try:
            yield
        finally:
            await store.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ClientError: client_error,
            Rejected: rejected,
            StoreUnavailable: unavailable,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.router.redirect_slashes = False  # /session/ is an unknown path (a JSON 404), not an empty 307 to /session
    app.state.store = store
    return ServedBy(app, node)


class ServedBy:
    """ASGI wrapper: every response, errors included, carries X-Served-By."""

    def __init__(self, app, node: str):
        self.app, self.header = app, (b"x-served-by", node.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)
