"""cookie: the whole session lives in the SESSION cookie, signed (HMAC-SHA1 via itsdangerous) with SECRET_KEYS.

- Every node holds the same keys, so any node reads any session; nothing is stored on the servers.
- Key rotation: the first key signs, every key verifies. Put a new key first, keep the old ones until the longest
  session signed with them has expired (SESSION_TTL), then drop them.
- The cookie is re-signed on every change and, on reads, when more than a tenth of SESSION_TTL has passed since it was
  signed: the signature's timestamp is the sliding expiry.
- A change that would make the cookie longer than 4096 bytes is refused with 413; the client keeps its old cookie.
- Logout can only ask the browser to drop its cookie. A copy of the cookie stays valid until it expires: a short
  SESSION_TTL bounds that window; a server-side revocation list would close it, at the price of a shared store lookup
  on every request, which is the thing this strategy exists to avoid.
- Concurrent changes from one client race: each request starts from the cookie it carried, so parallel increments
  are lost (the test suite measures how many).
"""

from __future__ import annotations

import time
from typing import Any

import itsdangerous

from .base import Change, Limits, Rejected, Session, SessionStore, new_id, too_many_keys

MAX_COOKIE_BYTES = 4096
COOKIE_NAME = "SESSION"


class SignedCookieStore(SessionStore):
    def __init__(self, limits: Limits, secret_keys: tuple[str, ...]):
        super().__init__(limits)
        # itsdangerous signs with the LAST key and verifies with all of them.
        self.serializer = itsdangerous.URLSafeTimedSerializer(list(reversed(secret_keys)), salt="session-kit.session")

    async def ping(self) -> None:
        return None

    def _decode(self, handle: str) -> tuple[dict[str, Any], float] | None:
        try:
            payload, signed_at = self.serializer.loads(handle, max_age=self.limits.ttl, return_timestamp=True)
            Session.from_json(payload)  # a payload of the wrong shape is as good as no session
        except (itsdangerous.BadData, KeyError, TypeError, ValueError, AttributeError):
            return None
        return payload, signed_at.timestamp()

    def _encode(self, sid: str, session: Session) -> str:
        handle = self.serializer.dumps({**session.as_json(), "sid": sid})
        if len(COOKIE_NAME) + 1 + len(handle) > MAX_COOKIE_BYTES:
            raise Rejected(413, "cookie_too_large",
                           f"the session cookie would exceed {MAX_COOKIE_BYTES} bytes; nothing was changed")
        return handle

    async def create(self, session: Session) -> str:
        return self._encode(new_id(), session)

    async def load(self, handle: str) -> Session | None:
        decoded = self._decode(handle)
        if decoded is None:
            return None
        payload, signed_at = decoded
        session = Session.from_json(payload)
        if time.time() - signed_at > self.limits.ttl / 10:
            session.renewed_handle = self._encode(payload["sid"], session)
        return session

    def _change(self, handle: str, mutate) -> Change | None:
        decoded = self._decode(handle)
        if decoded is None:
            return None
        payload = decoded[0]
        session = Session.from_json(payload)
        value = mutate(session)
        return Change(value, self._encode(payload["sid"], session))

    async def increment(self, handle: str) -> Change[int] | None:
        def bump(session: Session) -> int:
            session.counter += 1
            return session.counter

        return self._change(handle, bump)

    async def set_data(self, handle: str, key: str, value: Any) -> Change[None] | None:
        def put(session: Session) -> None:
            if key not in session.data and len(session.data) >= self.limits.max_data_keys:
                raise too_many_keys(self.limits.max_data_keys)
            session.data[key] = value

        return self._change(handle, put)

    async def delete_data(self, handle: str, key: str) -> Change[bool] | None:
        def remove(session: Session) -> bool:
            existed = key in session.data
            session.data.pop(key, None)
            return existed

        return self._change(handle, remove)

    async def destroy(self, handle: str) -> None:
        return None  # nothing is stored server-side; the app expires the browser's cookie

    async def rotate(self, handle: str, user: str) -> str | None:
        decoded = self._decode(handle)
        if decoded is None or decoded[0]["user"] != user:
            return None
        return self._encode(new_id(), Session.from_json(decoded[0]))
