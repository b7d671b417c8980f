"""The one interface every session backend implements.

A client carries a *handle*: the SESSION cookie's value, or a bearer token. For server-side stores the handle is an
opaque random id; for the cookie store it is the signed session itself. Every operation that changes a session
returns a Change: its result, and the new handle when the client must receive one (only the cookie store re-issues
its handle on change; server-side stores keep the id until login rotates it).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import re
import secrets
import time
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Reads and increments slide a session's expiry only once this share of SESSION_TTL has passed since its last slide
#: (every other change slides it at once): a slide is a write (on Redis one that goes on to every replica and the
#: AOF, on PostgreSQL a new row version, for the cookie a new cookie, for replication a touch sent to every peer),
#: and a session in use is never more than this share closer to its expiry than a slide on every request would leave.
SLIDE_AFTER = 0.1

#: Seconds a store's server may take to answer a command or statement before its requests get a 503: a server that
#: accepts connections but answers nothing (a hung host, a frozen VM: the kernel still acknowledges what is sent)
#: must fail requests within seconds, not hold them until the balancer gives up.
STORE_TIMEOUT = 2.0

# 32 random bytes, URL-safe base64 without padding: 256 bits, 43 characters.
_ID_BYTES = 32
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def is_valid_id(handle: str) -> bool:
    return ID_PATTERN.fullmatch(handle) is not None


class StoreUnavailable(Exception):
    """The backing store cannot be reached: the request gets a 503, nothing is changed."""


class Rejected(Exception):
    """The change was refused as a client error; the stored session is left as it was."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def too_many_keys(limit: int) -> Rejected:
    return Rejected(413, "too_many_keys", f"a session holds at most {limit} data keys")


async def stopped(task: asyncio.Task | None) -> None:
    """Cancel a store's background task (None: never started) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclasses.dataclass
class Session:
    user: str
    counter: int = 0
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: float = dataclasses.field(default_factory=time.time)
    #: a re-issued handle to send with a read (the cookie store slides its expiry this way)
    renewed_handle: str | None = dataclasses.field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {"user": self.user, "counter": self.counter, "data": self.data, "created": self.created}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Session:
        return cls(user=obj["user"], counter=int(obj["counter"]), data=dict(obj["data"]), created=float(obj["created"]))


@dataclasses.dataclass(frozen=True)
class Change(Generic[T]):
    value: T
    handle: str | None = None  # a new handle the client must receive, if any


@dataclasses.dataclass(frozen=True)
class Limits:
    ttl: int  # seconds of inactivity before expiry
    max_data_keys: int


class SessionStore(abc.ABC):
    """Load, change, rotate and destroy sessions by handle. A missing, malformed or expired handle reads as None."""

    def __init__(self, limits: Limits):
        self.limits = limits

    async def start(self) -> None:
        """Connect, create schema, start background work."""

    async def close(self) -> None:
        """Release connections and stop background work."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot serve."""

    @abc.abstractmethod
    async def create(self, session: Session) -> str:
        """Store a new session under a new handle and return the handle."""

    @abc.abstractmethod
    async def load(self, handle: str) -> Session | None:
        """The live session for a handle (sliding its expiry), or None."""

    @abc.abstractmethod
    async def increment(self, handle: str) -> Change[int] | None:
        """Add one to the counter atomically where the store allows; None when there is no session."""

    @abc.abstractmethod
    async def set_data(self, handle: str, key: str, value: Any) -> Change[None] | None:
        """Store one data value; None when there is no session."""

    @abc.abstractmethod
    async def delete_data(self, handle: str, key: str) -> Change[bool] | None:
        """Remove one data value (Change.value: whether it existed); None when there is no session."""

    @abc.abstractmethod
    async def destroy(self, handle: str) -> None:
        """Forget the session; the handle reads as None everywhere afterwards (the cookie store cannot: see README)."""

    @abc.abstractmethod
    async def rotate(self, handle: str, user: str) -> str | None:
        """Move a live session to a new handle for `user` (login on an existing session: fixation protection).

        The old handle is dead afterwards. Returns None when there is no live session under `handle`; the caller then
        creates a fresh one. A session of another user is destroyed, not carried over.
        """

    async def destroy_all(self, user: str) -> int:
        """Destroy every session of a user; stores without a per-user index refuse."""
        raise Rejected(404, "not_supported", "this strategy keeps no per-user index of sessions")
