"""cookie: the whole session lives in the SESSION cookie, signed with HMAC-SHA256 under SECRET_KEYS.

- Every node holds the same keys, so any node reads any session; nothing is stored on the servers.
- Key rotation: the first key signs, every key verifies (the first one first). Put a new key first, keep the old ones
  until the longest session signed with them has expired (SESSION_TTL), then drop them.
- The cookie is re-signed on every change and, on reads, when more than a tenth of SESSION_TTL has passed since it was
  signed: the signature's timestamp is the sliding expiry. A cookie signed more than SESSION_TTL ago (or more than a
  minute in the future: clocks of nodes differ a little, not more) reads as no session.
- A change that would make the cookie longer than 4096 bytes is refused with 413; the client keeps its old cookie.
- Logout can only ask the browser to drop its cookie. A copy of the cookie stays valid until it expires: a short
  SESSION_TTL bounds that window; a server-side revocation list would close it, at the price of a shared store lookup
  on every request, which is the thing this strategy exists to avoid.
- Concurrent changes from one client race: each request starts from the cookie it carried, so parallel increments
  are lost (the test suite measures how many).

The format, `TIMESTAMP.COUNTER.BODY.MAC`, is built so that a request does only the work its answer needs:

- TIMESTAMP: when it was signed (Unix seconds, decimal); COUNTER: the counter (decimal), outside the body, so that an
  increment re-signs the cookie without decoding or encoding the body at all.
- BODY: `j` + base64url(JSON of user, data, created, session id), or `z` + base64url(zlib of that JSON) when
  compressing saves at least a tenth (never for a small session: zlib costs more than it saves there).
- MAC: HMAC-SHA256 over `TIMESTAMP.COUNTER.BODY`, hex, under a key derived from the secret for this use only
  (HMAC(secret, "session-kit.cookie.v2")): a secret shared with something else cannot sign these cookies, and the
  old itsdangerous cookies never verify (they read as no session: their users log in again).
- A read verifies the MAC once (one HMAC: the newest key verifies first), checks the timestamp, and decodes the body
  only when it has not just decoded the same body: the last bodies decoded are kept, keyed by the verified body
  string, in a small bounded map (a body changes only when the data does; the counter and timestamp live outside).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from typing import Any

from .base import SLIDE_AFTER, Change, Limits, Rejected, Session, SessionStore, new_id, too_many_keys

MAX_COOKIE_BYTES = 4096
COOKIE_NAME = "SESSION"

_CONTEXT = b"session-kit.cookie.v2"
_FUTURE_SKEW = 60  # seconds a cookie's timestamp may be ahead of this node's clock
_COMPRESS_FROM = 256  # bodies shorter than this are never compressed
_MAX_BODY_JSON = 1 << 20  # a compressed body may not expand beyond this (it is signed, but bound it anyway)
_DECODED_KEEP = 1024  # decoded bodies kept
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_decode_json = json.JSONDecoder().decode


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignedCookieStore(SessionStore):
    def __init__(self, limits: Limits, secret_keys: tuple[str, ...]):
        super().__init__(limits)
        # One keyed HMAC per secret, newest first; each message MACs a copy (the key's pads are computed once).
        self._macs = [
            hmac.new(hmac.digest(key.encode(), _CONTEXT, "sha256"), digestmod=hashlib.sha256) for key in secret_keys
        ]
        self._decoded: dict[str, tuple[str, dict[str, Any], float, str]] = {}

    async def ping(self) -> None:
        return None

    # -- the format -------------------------------------------------------------------------------------------------

    def _mac(self, message: bytes, index: int = 0) -> str:
        mac = self._macs[index].copy()
        mac.update(message)
        return mac.hexdigest()

    def _verify(self, handle: str) -> tuple[int, int, str] | None:
        """(signed at, counter, body) of a cookie that is ours, unaltered and not expired; None for anything else."""
        signed, dot, mac = handle.rpartition(".")
        if not dot or len(mac) != 64 or not mac.isascii():
            return None
        try:
            message = signed.encode("ascii")
        except UnicodeEncodeError:
            return None
        for index in range(len(self._macs)):
            if hmac.compare_digest(self._mac(message, index), mac):
                break
        else:
            return None
        stamp, _, rest = signed.partition(".")
        count, _, body = rest.partition(".")
        try:
            signed_at, counter = int(stamp), int(count)
        except ValueError:  # signed by our key, yet not our format: not a session
            return None
        age = time.time() - signed_at
        if age > self.limits.ttl or age < -_FUTURE_SKEW:
            return None
        return signed_at, counter, body

    def _sign(self, counter: int, body: str) -> str:
        signed = f"{int(time.time())}.{counter}.{body}"
        handle = f"{signed}.{self._mac(signed.encode('ascii'))}"
        if len(COOKIE_NAME) + 1 + len(handle) > MAX_COOKIE_BYTES:
            raise Rejected(
                413,
                "cookie_too_large",
                f"the session cookie would exceed {MAX_COOKIE_BYTES} bytes; nothing was changed",
            )
        return handle

    def _encode_body(self, user: str, data: dict[str, Any], created: float, sid: str) -> str:
        raw = _encode_json([user, data, created, sid]).encode("utf-8")
        if len(raw) >= _COMPRESS_FROM:
            packed = zlib.compress(raw, 6)
            if len(packed) <= len(raw) * 0.9:
                return "z" + _b64encode(packed)
        return "j" + _b64encode(raw)

    def _decode_body(self, body: str) -> tuple[str, dict[str, Any], float, str] | None:
        known = self._decoded.get(body)
        if known is not None:
            return known
        try:
            raw = _b64decode(body[1:])
            if body[:1] == "z":
                inflater = zlib.decompressobj()
                raw = inflater.decompress(raw, _MAX_BODY_JSON)
                if inflater.unconsumed_tail or not inflater.eof:
                    return None
            elif body[:1] != "j":
                return None
            user, data, created, sid = _decode_json(raw.decode("utf-8"))
            if not (
                isinstance(user, str)
                and isinstance(data, dict)
                and isinstance(created, (int, float))
                and isinstance(sid, str)
            ):
                return None
        except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError, TypeError):
            return None
        decoded = (user, data, float(created), sid)
        if len(self._decoded) >= _DECODED_KEEP:
            del self._decoded[next(iter(self._decoded))]  # the oldest entry
        self._decoded[body] = decoded
        return decoded

    def _open(self, handle: str) -> tuple[int, int, str, tuple[str, dict[str, Any], float, str]] | None:
        verified = self._verify(handle)
        if verified is None:
            return None
        decoded = self._decode_body(verified[2])
        return None if decoded is None else (*verified, decoded)

    @staticmethod
    def _session(counter: int, decoded: tuple[str, dict[str, Any], float, str]) -> Session:
        user, data, created, _ = decoded
        # A copy of the top level: the kept decoding must not see this session's changes (values are replaced or
        # removed whole, never changed in place).
        return Session(user=user, counter=counter, data=dict(data), created=created)

    # -- the store --------------------------------------------------------------------------------------------------

    async def create(self, session: Session) -> str:
        return self._sign(session.counter, self._encode_body(session.user, session.data, session.created, new_id()))

    async def load(self, handle: str) -> Session | None:
        opened = self._open(handle)
        if opened is None:
            return None
        signed_at, counter, body, decoded = opened
        session = self._session(counter, decoded)
        if time.time() - signed_at > self.limits.ttl * SLIDE_AFTER:
            session.renewed_handle = self._sign(counter, body)  # the same body: nothing to encode
        return session

    async def increment(self, handle: str) -> Change[int] | None:
        verified = self._verify(handle)  # the body is not even decoded: it does not change
        if verified is None:
            return None
        counter = verified[1] + 1
        return Change(counter, self._sign(counter, verified[2]))

    def _change(self, handle: str, mutate) -> Change | None:
        opened = self._open(handle)
        if opened is None:
            return None
        _, counter, _, decoded = opened
        session = self._session(counter, decoded)
        value = mutate(session)
        body = self._encode_body(session.user, session.data, session.created, decoded[3])
        return Change(value, self._sign(session.counter, body))

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
        opened = self._open(handle)
        if opened is None or opened[3][0] != user:
            return None
        _, counter, _, (user, data, created, _) = opened
        return self._sign(counter, self._encode_body(user, data, created, new_id()))
