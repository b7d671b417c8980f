"""The signed cookie's format and its security, driven on the store directly (sample_app/stores/signed_cookie.py):
HMAC-SHA256 under a derived key, the timestamp as the sliding expiry, key rotation, the 4 KB limit, and every
tampered, expired, foreign or malformed cookie reading as no session. The app-level cases (401s over HTTP, 413 with
the old cookie kept, rotation across nodes) are in test_bad_input.py and test_strategies.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import zlib

import itsdangerous
import pytest

from sample_app.stores.base import Limits, Rejected, Session
from sample_app.stores.signed_cookie import MAX_COOKIE_BYTES, SignedCookieStore

TTL = 600
NEW, OLD = "new-key-" + "n" * 24, "old-key-" + "o" * 24


def store(*keys: str, ttl: int = TTL) -> SignedCookieStore:
    return SignedCookieStore(Limits(ttl=ttl, max_data_keys=64), keys or (NEW,))


def run(coroutine):
    return asyncio.run(coroutine)


def login(cookies: SignedCookieStore, user: str = "alice") -> str:
    return run(cookies.create(Session(user=user)))


def sign_as_the_store_does(secret: str, signed: str) -> str:
    """What the README documents: HMAC-SHA256 over TIMESTAMP.COUNTER.BODY under HMAC(secret, context), hex."""
    key = hmac.digest(secret.encode(), b"session-kit.cookie.v2", "sha256")
    return f"{signed}.{hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()}"


@pytest.fixture
def clock(monkeypatch):
    """The store's clock, moved by hand: time.time() returns now + offset[0]."""
    offset = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])
    return offset


def test_round_trip_of_every_operation():
    cookies = store()
    handle = login(cookies)
    session = run(cookies.load(handle))
    assert (session.user, session.counter, session.data) == ("alice", 0, {})
    change = run(cookies.increment(handle))
    assert change.value == 1 and change.handle != handle
    handle = change.handle
    handle = run(cookies.set_data(handle, "k", {"nested": [1, 2.5, "é", None]})).handle
    change = run(cookies.delete_data(handle, "missing"))
    assert change.value is False
    session = run(cookies.load(change.handle))
    assert (session.counter, session.data) == (1, {"k": {"nested": [1, 2.5, "é", None]}})
    rotated = run(cookies.rotate(change.handle, "alice"))
    assert rotated is not None and run(cookies.load(rotated)).data == session.data
    assert run(cookies.rotate(change.handle, "mallory")) is None, "a session of another user is not carried over"


def test_an_increment_re_signs_without_re_encoding_the_body():
    cookies = store()
    handle = run(cookies.set_data(login(cookies), "k", "v")).handle
    after = run(cookies.increment(handle)).handle
    # TIMESTAMP.COUNTER.BODY.MAC: the body is the same string, the counter is one more, the MAC is new.
    assert after.split(".")[2] == handle.split(".")[2]
    assert int(after.split(".")[1]) == int(handle.split(".")[1]) + 1
    assert after.split(".")[3] != handle.split(".")[3]


def test_every_single_character_changed_reads_as_no_session():
    cookies = store()
    handle = run(cookies.set_data(login(cookies), "k", "value")).handle
    assert run(cookies.load(handle)) is not None
    for position, character in enumerate(handle):
        for other in {"0", "A", "z", "."} - {character}:
            forged = handle[:position] + other + handle[position + 1 :]
            assert run(cookies.load(forged)) is None, f"changed at {position}: {forged}"
            assert run(cookies.increment(forged)) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: h[:-1],
        lambda h: h + "0",
        lambda h: h.upper(),
        lambda h: "",
        lambda h: ".",
        lambda h: "...",
        lambda h: h.rpartition(".")[0],
        lambda h: h.replace(".", "", 1),
        lambda h: h + "." + h.rpartition(".")[2],
        lambda h: "x" * 5000,
        lambda h: "é" * 64,
        lambda h: h[:-64] + "é" * 64,
        lambda h: h[:-64] + "G" * 64,
    ],
)
def test_malformed_cookies_read_as_no_session(mangle):
    cookies = store()
    handle = login(cookies)
    assert run(cookies.load(mangle(handle))) is None
    assert run(cookies.increment(mangle(handle))) is None
    assert run(cookies.set_data(mangle(handle), "k", 1)) is None


def test_a_valid_signature_over_something_else_is_no_session():
    """Signed with the right key, yet not a session: not our format, or not our body."""
    cookies = store()
    now = int(time.time())
    bodies = [
        "j" + base64.urlsafe_b64encode(b'{"user":"x"}').decode().rstrip("="),
        "jnot-base64!",
        "q",
        "",
        "z" + base64.urlsafe_b64encode(b"not zlib").decode().rstrip("="),
        "j" + base64.urlsafe_b64encode(json.dumps([1, {}, 0.0, "sid"]).encode()).decode().rstrip("="),
    ]
    for body in bodies:
        assert run(cookies.load(sign_as_the_store_does(NEW, f"{now}.0.{body}"))) is None, body
    assert run(cookies.load(sign_as_the_store_does(NEW, f"{now}.x.j"))) is None
    assert run(cookies.load(sign_as_the_store_does(NEW, f"soon.0.{bodies[-1]}"))) is None
    # ... and the same construction with a good body is a session: the test above is about the bodies, not the MAC
    good = "j" + base64.urlsafe_b64encode(json.dumps(["x", {}, 0.0, "sid"]).encode()).decode().rstrip("=")
    assert run(cookies.load(sign_as_the_store_does(NEW, f"{now}.7.{good}"))).counter == 7


def test_cookies_of_the_old_itsdangerous_format_read_as_no_session():
    old = itsdangerous.URLSafeTimedSerializer([NEW], salt="session-kit.session")
    handle = old.dumps({"user": "alice", "counter": 3, "data": {}, "created": time.time(), "sid": "s" * 43})
    assert run(store().load(handle)) is None


def test_the_signature_is_bound_to_its_key_and_to_this_use():
    cookies = store()
    handle = login(cookies)
    signed = handle.rpartition(".")[0]
    assert handle == sign_as_the_store_does(NEW, signed), "the format is as documented"
    plain = f"{signed}.{hmac.new(NEW.encode(), signed.encode(), hashlib.sha256).hexdigest()}"
    assert run(cookies.load(plain)) is None, "an HMAC under the raw secret (another use of it) must not verify"
    assert run(store("another-key-" + "x" * 20).load(handle)) is None


def test_key_rotation_newest_signs_older_still_verify():
    before = store(OLD)
    handle = login(before)
    during = store(NEW, OLD)
    assert run(during.load(handle)).user == "alice", "a cookie of the old key still reads"
    changed = run(during.increment(handle)).handle
    after = store(NEW)
    assert run(after.load(changed)).counter == 1, "changes are signed with the newest key"
    assert run(after.load(handle)) is None, "once the old key is dropped, its cookies end"
    assert run(store(OLD).load(changed)) is None


def test_expiry_is_the_signature_timestamp_and_reads_slide_it(clock):
    cookies = store()
    handle = login(cookies)
    clock[0] = TTL / 20
    assert run(cookies.load(handle)).renewed_handle is None, "no re-signing within a tenth of the TTL"
    clock[0] = TTL * 0.5
    session = run(cookies.load(handle))
    assert session.renewed_handle is not None and session.renewed_handle.split(".")[2] == handle.split(".")[2]
    renewed = session.renewed_handle
    clock[0] = TTL + 2
    assert run(cookies.load(handle)) is None, "expired: signed more than SESSION_TTL ago"
    assert run(cookies.increment(handle)) is None
    assert run(cookies.load(renewed)).user == "alice", "the renewed cookie slid the expiry"
    clock[0] = TTL * 0.5 + TTL + 2
    assert run(cookies.load(renewed)) is None


def test_a_timestamp_from_the_future_is_refused_beyond_a_minute(clock):
    cookies = store()
    clock[0] = 30
    slightly_ahead = login(cookies)
    clock[0] = 3600
    far_ahead = login(cookies)
    clock[0] = 0
    assert run(cookies.load(slightly_ahead)) is not None, "nodes' clocks differ a little"
    assert run(cookies.load(far_ahead)) is None


def test_compression_only_when_it_pays():
    cookies = store()
    small = run(cookies.set_data(login(cookies), "text", "a" * 100)).handle
    assert small.split(".")[2].startswith("j"), "a small body is never compressed (zlib costs more than it saves)"
    compressible = run(cookies.set_data(small, "text", "session " * 200)).handle
    assert compressible.split(".")[2].startswith("z")
    assert len(compressible) < 1000, "1600 bytes of repetitive text fit in a small cookie"
    body = base64.urlsafe_b64decode(compressible.split(".")[2][1:] + "==")
    assert json.loads(zlib.decompress(body))[1] == {"text": "session " * 200}
    assert run(cookies.load(compressible)).data == {"text": "session " * 200}
    back = run(cookies.set_data(compressible, "text", "short")).handle
    assert back.split(".")[2].startswith("j") and run(cookies.load(back)).data == {"text": "short"}


def test_a_cookie_past_4096_bytes_is_refused_and_nothing_changes():
    cookies = store()
    handle = login(cookies)
    stored = {}
    for i in range(10):
        value = secrets.token_urlsafe(600)  # random: compression saves a quarter at most
        try:
            handle = run(cookies.set_data(handle, f"blob{i}", value)).handle
        except Rejected as refused:
            assert (refused.status, refused.code) == (413, "cookie_too_large")
            break
        stored[f"blob{i}"] = value
        assert len("SESSION=") + len(handle) <= MAX_COOKIE_BYTES
    else:
        pytest.fail("the cookie never reached its limit")
    assert run(cookies.load(handle)).data == stored, "the refused change left the session as it was"


def test_a_kept_decoding_is_not_changed_by_the_sessions_built_from_it():
    cookies = store()
    handle = run(cookies.set_data(login(cookies), "k", [1])).handle
    first = run(cookies.load(handle))
    first.data["k"] = "changed by a caller"
    first.data["extra"] = 1
    assert run(cookies.load(handle)).data == {"k": [1]}
    changed = run(cookies.set_data(handle, "other", 2)).handle
    assert run(cookies.load(handle)).data == {"k": [1]}
    assert run(cookies.load(changed)).data == {"k": [1], "other": 2}
