"""The HTTP contract as an OpenAPI 3 document, served at GET /openapi.json.

It describes what app.py answers, status by status, with strict schemas (no extra fields, the error codes each status
may carry): the fuzzer in tests/app/test_fuzz.py reads it, sends what it allows and what it does not, and fails on
any 5xx and on any answer the document does not describe. The document depends on the strategy only where the
contract does: how the client carries its session (cookie or bearer token) and the replication peers' routes.
"""

from __future__ import annotations

from typing import Any

from .settings import Settings

# The error codes each status may carry. A code the app sends and this table lacks fails the fuzz test.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_json", "invalid_value", "too_deep", "invalid_username", "invalid_key"),
    401: ("no_session",),
    404: ("not_found", "not_supported"),
    405: ("method_not_allowed",),
    413: ("body_too_large", "value_too_large", "too_many_keys", "cookie_too_large"),
    503: ("store_unavailable",),
}

WHY = {
    400: "the request was refused: not JSON, a value the app does not accept, or a malformed name",
    401: "no valid session: missing, tampered, forged, expired or logged out",
    404: "no such path (a data key with a slash is another path), or not supported by this strategy",
    405: "the path exists, but not with this method (the Allow header lists the methods it has)",
    413: "too large: the body, the value, the number of data keys, or the cookie it would make",
    503: "the session store cannot serve now; nothing was changed",
}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


STRING = {"type": "string"}
JSON_STRING = {"$ref": "#/components/schemas/JsonString"}
JSON_VALUE = {"$ref": "#/components/schemas/JsonValue"}
COUNTER = {"type": "integer", "format": "int64", "minimum": 0}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Served-By": {"$ref": "#/components/headers/ServedBy"}},
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in statuses}


def _operation(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    session: str = "required",
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """session: "required" (401 without one), "optional" (used when present) or "none"."""
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors, 405)}}
    if session == "required":
        operation["security"] = [{"session": []}]
    elif session == "optional":
        operation["security"] = [{}, {"session": []}]
    else:
        operation["security"] = []
    if body is not None:
        operation["requestBody"] = body
    return operation


def _replication_paths() -> dict[str, Any]:
    """The peers' endpoints (replication_api.py): signed with REPLICATION_KEY, each signed request accepted once."""
    peer = [{"peer": []}]
    refusals = {
        "401": _json(
            _object({"error": {"enum": ["unauthenticated"]}, "message": STRING}),
            "missing, wrong or stale X-Replication-Auth signature",
        ),
        "409": _json(
            _object({"error": {"enum": ["replayed"]}, "message": STRING}), "this signed request was already received"
        ),
        **_errors(405),
    }
    merging = {
        "security": peer,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": _json(_object({"applied": COUNTER}), "merged: how many changes were new"),
            "400": _json(_object({"error": {"enum": ["invalid_deltas"]}, "message": STRING}), "not a batch of changes"),
            **refusals,
        },
    }
    return {
        "/_replication/deltas": {"post": {"summary": "replication peers only: apply a batch of changes", **merging}},
        "/_replication/merge": {"post": {"summary": "replication peers only: merge a snapshot", **merging}},
        "/_replication/snapshot": {
            "post": {
                "summary": "replication peers only: every session this node holds",
                "security": peer,
                "responses": {"200": _json({"type": "object"}, "the snapshot"), **refusals},
            }
        },
        "/_replication/status": {
            "get": {
                "summary": "replication lag and peer states",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "status"), **_errors(405)},
            }
        },
    }


def document(settings: Settings, bearer: bool, replication: bool, max_depth: int) -> dict[str, Any]:
    key = {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "description": "1-64 characters of A-Z a-z 0-9 _ . - (anything else: 400 invalid_key)",
    }
    login_ok = {"user": STRING, "node": STRING, **({"token": STRING} if bearer else {})}
    json_rule = (
        "UTF-8 JSON; no NaN or Infinity (nor numbers beyond a double's range), arrays and objects nested "
        f"at most {max_depth} deep, no NUL or unpaired surrogate in any string or key (400 otherwise); "
        f"at most {settings.max_body_bytes} bytes (413 beyond)"
    )
    paths: dict[str, Any] = {
        "/ping": {
            "get": _operation(
                "no session at all: the benchmark's baseline",
                _json(_object({"node": STRING}), "this node"),
                (),
                session="none",
            )
        },
        "/healthz": {
            "get": {
                "summary": "whether this node and its session store can serve",
                "security": [],
                "responses": {
                    "200": _json(_object({"status": {"enum": ["ok"]}, "node": STRING, "strategy": STRING}), "ready"),
                    "503": _json(
                        _object(
                            {
                                "status": {"enum": ["unavailable"]},
                                "node": STRING,
                                "strategy": STRING,
                                "error": {"enum": ["store_unavailable"]},
                                "message": STRING,
                            }
                        ),
                        "the session store cannot serve",
                    ),
                    **_errors(405),
                },
            }
        },
        "/login": {
            "post": _operation(
                "start a session (always a new id; a session already held moves to it, or ends for another user)",
                _json(
                    _object(login_ok),
                    "logged in"
                    + ("; the token is the bearer credential" if bearer else "; Set-Cookie carries the SESSION cookie"),
                ),
                (400, 413, 503),
                session="optional",
                body={
                    "required": True,
                    "description": json_rule,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["username"],
                                "properties": {"username": {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"}},
                                "propertyNames": JSON_STRING,
                                "additionalProperties": JSON_VALUE,
                            }
                        }
                    },
                },
            )
        },
        "/session": {
            "get": _operation(
                "read the session",
                _json(
                    _object(
                        {
                            "user": STRING,
                            "node": STRING,
                            "strategy": STRING,
                            "counter": COUNTER,
                            "data": {"type": "object", "additionalProperties": True},
                        }
                    ),
                    "the session",
                ),
                (401, 503),
            )
        },
        "/session/counter": {
            "post": _operation(
                "add one to the session's counter",
                _json(_object({"counter": COUNTER, "node": STRING}), "the counter after this increment"),
                (401, 503),
            )
        },
        "/session/data/{key}": {
            "parameters": [key],
            "put": _operation(
                "store one JSON value under a key",
                _json(_object({"key": STRING, "stored": {"enum": [True]}, "node": STRING}), "stored"),
                (400, 401, 404, 413, 503),
                body={
                    "required": True,
                    "description": json_rule + f"; the value at most {settings.max_value_bytes} "
                    f"bytes of JSON, at most {settings.max_data_keys} keys per session (413 beyond)",
                    "content": {"application/json": {"schema": JSON_VALUE}},
                },
            ),
            "delete": _operation(
                "remove one key",
                _json(
                    _object({"key": STRING, "deleted": {"type": "boolean"}, "node": STRING}),
                    "removed (deleted: whether it existed)",
                ),
                (400, 401, 404, 503),
            ),
        },
        "/logout": {
            "post": _operation(
                "end the session",
                _json(_object({"status": {"enum": ["logged_out"]}, "node": STRING}), "ended"),
                (401, 503),
            )
        },
        "/logout/all": {
            "post": _operation(
                "end every session of the user (token only; other strategies: 404 not_supported)",
                _json(
                    _object({"status": {"enum": ["logged_out"]}, "sessions_ended": COUNTER, "node": STRING}),
                    "every session of the user ended",
                ),
                (401, 404, 503),
            )
        },
        "/": {
            "get": {
                "summary": "a small page to watch requests move between nodes",
                "security": [],
                "responses": {
                    "200": {"description": "the page", "content": {"text/html": {"schema": STRING}}},
                    **_errors(405),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document"), **_errors(405)},
            }
        },
    }
    if replication:
        paths.update(_replication_paths())
    schemes: dict[str, Any] = {
        "session": (
            {"type": "http", "scheme": "bearer", "description": "the token from POST /login"}
            if bearer
            else {
                "type": "apiKey",
                "in": "cookie",
                "name": "SESSION",
                "description": "the SESSION cookie set by POST /login (HttpOnly, SameSite=Lax)",
            }
        )
    }
    if replication:
        schemes["peer"] = {
            "type": "apiKey",
            "in": "header",
            "name": "X-Replication-Auth",
            "description": "TIMESTAMP:HMAC-SHA256 under REPLICATION_KEY",
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "session-kit sample app",
            "version": "1",
            "description": f"strategy {settings.session_strategy}: the same contract on every node "
            "(docs/sample-app.md)",
        },
        "paths": paths,
        "components": {
            "securitySchemes": schemes,
            "headers": {"ServedBy": {"description": "the node that answered", "required": True, "schema": STRING}},
            "schemas": {
                "Error": _object({"error": STRING, "message": STRING}),
                # What a JSON body may hold (app.parse_json), as far as JSON Schema can say it: the depth limit
                # and unpaired surrogates are in the descriptions only.
                "JsonString": {"type": "string", "pattern": "^[^\\u0000]*$"},
                "JsonValue": {
                    "description": "any JSON value: finite numbers, no NUL in strings or keys, "
                    f"nested at most {max_depth} deep",
                    "anyOf": [
                        {"type": ["null", "boolean", "number"]},
                        JSON_STRING,
                        {"type": "array", "items": JSON_VALUE},
                        {"type": "object", "propertyNames": JSON_STRING, "additionalProperties": JSON_VALUE},
                    ],
                },
            },
            "responses": {
                f"Error{status}": _json(
                    {
                        "allOf": [
                            {"$ref": "#/components/schemas/Error"},
                            {"type": "object", "properties": {"error": {"enum": list(codes)}}},
                        ]
                    },
                    WHY[status],
                )
                for status, codes in ERROR_CODES.items()
            },
        },
    }
