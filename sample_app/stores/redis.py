"""redis: one Redis hash per session (like Spring Session), shared by every node.

- Fields: user, counter, created, and d:<key> for each data value (JSON). Only the changed field is written.
- Every change of a session is one Lua script over that one key (one round trip, atomic): it first checks that the
  session still exists (a change racing a logout must not bring back a half session), then HINCRBY/HSET/HDEL.
  Reads are plain commands (below).
- The expiry slides (PEXPIRE) on every change of the data; reads and increments slide it only once more than a tenth
  of SESSION_TTL has passed since the last slide, as the database and cookie strategies do. A PEXPIRE is a write:
  sent on to every replica and the AOF, and Redis's CPU on the cores the app shares; a PTTL is a read.
- Reads and increments of one event-loop turn go together (batching.py): the increments as one script call over all
  their keys, the reads as plain HGETALL and PTTL commands in one write (then one PEXPIRE each for the few due a
  slide, not waited for). A read in Lua cost Redis twice the CPU of the same commands sent plainly (8-11 us per
  session against 4.3-4.7 with 14 sessions per batch, from Redis's own CPU; under wrk 9.2 -> 3.8-4.7 us per read,
  the app's CPU per read unchanged): the script converts every field to Lua and back. The read needs no atomicity
  (a slide that lands after a logout is a no-op on a missing key); an increment does (no half session), and stays a
  script. On Redis Cluster both are one script call per slot (a script may touch one slot only), the calls to one
  node in one write, so that a slot that fails fails its own sessions only.
- Reads on a single Redis or through Sentinel go over a second connection, RESP3 with CLIENT TRACKING on, and the
  node answers from its own copy of a session it read before, once one round trip on that connection has shown that
  Redis sent no invalidation for it (client_cache.py: why every node still reads every write; REDIS_CACHE_SESSIONS).
- No script touches two keys, so no key needs a hash tag and every key spreads over the cluster's slots: id rotation
  (login on an existing session) writes the new key, then deletes the old one (never RENAME); the token store's
  per-user index is changed by commands of its own (see TokenStore).

Keys (the same on a single Redis, through Sentinel and on a cluster):
  session:<id>            the redis strategy's sessions (a hash)
  token:<sha256 of token> the token strategy's sessions (a hash)
  user-tokens:<user>      the token strategy's per-user index (a set of token hashes), no TTL of its own
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from .base import SLIDE_AFTER, Change, Limits, Session, StoreUnavailable, is_valid_id, new_id, too_many_keys
from .batching import Batcher, BatchingStore
from .client_cache import ClientCache
from .resp import LeanRedis, RedisError
from .resp_cluster import ClusterRedis

log = logging.getLogger("sample_app.redis")

_FIXED_FIELDS = 3  # user, counter, created
_FIXED = frozenset((b"user", b"counter", b"created"))


def _half(fields: dict) -> None:
    """A session hash without its fixed fields is no session (a 401, never a 500): Redis can only hold one if
    something outside the app wrote it, or an append-only file was replayed without some of its transactions."""
    log.warning("a session hash without user, counter or created (fields %s): read as no session", sorted(fields))
    return None


#: Every key the app writes or reads starts with one of these: an ACL user needs ~session:* ~token:* ~user-tokens:*.
KEY_PATTERNS = ("session:*", "token:*", "user-tokens:*")

#: Every command the app sends (AUTH aside, always allowed), by itself or from its scripts: an ACL user limited to
#: these (and to KEY_PATTERNS) can run every strategy on Redis, through Sentinel and on Redis Cluster.
ACL_COMMANDS = (
    "ping",
    "select",
    "evalsha",
    "eval",
    "script|load",
    "cluster|slots",
    "asking",  # connection, scripts, cluster
    "hello",
    "client|tracking",  # the reads' tracking connection (client_cache.py)
    "hgetall",
    "hget",
    "hset",
    "hdel",
    "hexists",
    "hlen",
    "hincrby",
    "pexpire",
    "pttl",
    "exists",
    "del",  # sessions
    "smembers",
    "sadd",
    "srem",  # the token store's per-user index
)

CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Increments of one event-loop turn go to Redis as one script call over all their keys (batching.py), and on Redis
# Cluster the reads too (one call per slot): one command to pack, send, parse and wait for instead of one per
# request. Each returns one result per key.
# ARGV[1]: the TTL in ms; ARGV[2]: the remaining TTL (PTTL) below which a read or an increment slides it (a tenth
# of the TTL has passed). PTTL is -2 for a key that does not exist (and -1 for one without expiry: slid, so given one).
LOAD_MANY = """
local result = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  if #fields > 0 and redis.call('PTTL', key) < tonumber(ARGV[2]) then redis.call('PEXPIRE', key, ARGV[1]) end
  result[i] = fields
end
return result
"""

INCREMENT_MANY = """
local result = {}
for i, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  if ttl ~= -2 and redis.call('HEXISTS', key, 'user') == 1 then
    result[i] = redis.call('HINCRBY', key, 'counter', 1)
    if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', key, ARGV[1]) end
  else
    result[i] = false
  end
end
return result
"""

SET_DATA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 and redis.call('HLEN', KEYS[1]) - 3 >= tonumber(ARGV[4]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

DELETE_DATA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local n = redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""

# Returns the session's user (false when there was no session), for the caller to update the user's index.
DESTROY = """
local user = redis.call('HGET', KEYS[1], 'user')
redis.call('DEL', KEYS[1])
return user
"""


class RedisStore(BatchingStore):
    key_prefix = "session:"
    index_prefix = ""  # "" keeps no per-user index

    def __init__(
        self, limits: Limits, redis: LeanRedis | ClusterRedis, poll: float = 0.0, reads: LeanRedis | None = None
    ):
        """reads: a tracking connection (LeanRedis with a ClientCache as its tracker) that reads go over, answered
        from the node's copies where it holds them (client_cache.py); None: every read from Redis."""
        super().__init__(limits)
        self.redis = redis
        self.reads = reads
        self.cache: ClientCache[Session] | None = reads.tracker if reads is not None else None  # type: ignore
        self.ttl_ms = limits.ttl * 1000
        self.slide_below_ms = round(self.ttl_ms * (1 - SLIDE_AFTER))  # reads and increments slide below it
        self._loads = Batcher(self._load_many, poll=poll)
        self._increments = Batcher(self._increment_many, poll=poll)
        self._slides: set[asyncio.Future] = set()  # PEXPIREs of read sessions, sent and not yet answered

    async def close(self) -> None:
        await self.redis.close()
        if self.reads is not None:
            await self.reads.close()

    async def ping(self) -> None:
        await self._call(self.redis.ping())
        if self.reads is not None:
            await self._call(self.reads.ping())

    @staticmethod
    async def _call(awaitable):
        try:
            return await awaitable
        except RedisError as error:  # OOM, READONLY replica after failover, ...: the store cannot serve now
            raise StoreUnavailable(f"redis: {error}") from None

    # Handles map to keys here; the token store hashes them first.
    def member(self, handle: str) -> str:
        return handle

    def key(self, handle: str) -> str:
        return self.key_prefix + self.member(handle)

    def _index(self, user: str) -> str:
        return self.index_prefix + user if self.index_prefix else ""

    async def _create(self, handle: str, session: Session, fields: list[Any]) -> str:
        await self._call(self.redis.script(CREATE, [self.key(handle)], [self.ttl_ms, *fields]))
        if self.index_prefix:
            # Only once the session exists: a login reading the index meanwhile must not find a member without its
            # session (it would drop it as expired, and /logout/all would then miss it).
            await self._index_add(session.user, self.member(handle))
        return handle

    async def _index_add(self, user: str, member: str) -> None:
        """List a session in its user's index, and drop the members whose session has expired (the index has no
        TTL of its own: its sessions slide theirs on every use), so it stays as small as the user's live sessions.
        The index's slot is the user's and each session's its own: separate commands, no script over both."""
        index = self._index(user)
        members, _ = await self._call(self.redis.pipeline(("SMEMBERS", index), ("SADD", index, member)))
        if not members:
            return
        alive = await self._call(self.redis.pipeline(*(("EXISTS", self.key_prefix + m.decode()) for m in members)))
        dead = [m for m, exists in zip(members, alive) if not exists]
        if dead:
            await self._call(self.redis.execute("SREM", index, *dead))

    async def create(self, session: Session) -> str:
        fields = ["user", session.user, "counter", session.counter, "created", repr(session.created)]
        for name, value in session.data.items():
            fields += ["d:" + name, json.dumps(value)]
        return await self._create(new_id(), session, fields)

    @staticmethod
    def _parse(flat: list[bytes]) -> Session | None:
        """A session from HGETALL's flat [field, value, ...] list (None for an empty one: no session)."""
        if not flat:
            return None
        if len(flat) >= 6 and flat[0] == b"user" and flat[2] == b"counter" and flat[4] == b"created":
            # The order create() writes them in, which HGETALL keeps for a small hash (a listpack): read by position,
            # half the cost of the dict below on every read. What follows are the d:<key> fields.
            user, counter, created = flat[1], flat[3], flat[5]
            data_fields = zip(flat[6::2], flat[7::2]) if len(flat) > 6 else ()
        else:  # any other order (a large hash, kept as a hashtable, has its own)
            pairs = iter(flat)
            fields = dict(zip(pairs, pairs))
            if not _FIXED.issubset(fields):
                return _half(fields)
            user, counter, created = fields.pop(b"user"), fields.pop(b"counter"), fields.pop(b"created")
            data_fields = fields.items()
        data = {name[2:].decode(): json.loads(value) for name, value in data_fields} if data_fields else {}
        return Session(user.decode(), int(counter), data, float(created))

    @staticmethod
    def _parse_map(fields: dict[bytes, bytes]) -> Session | None:
        """A session from HGETALL's RESP3 reply (a map; empty: no session)."""
        if not fields:
            return None
        if not _FIXED.issubset(fields):
            return _half(fields)
        data = (
            {name[2:].decode(): json.loads(value) for name, value in fields.items() if name[:2] == b"d:"}
            if len(fields) > _FIXED_FIELDS
            else {}
        )
        return Session(fields[b"user"].decode(), int(fields[b"counter"]), data, float(fields[b"created"]))

    # On a cluster a batch's keys are in many slots: script_each runs the script once per slot, and a slot that
    # fails (its primary failing over) answers its keys with a StoreUnavailable, which the Batcher raises for those
    # requests only.
    async def _load_many(self, handles: Sequence[str]) -> list[Session | None | StoreUnavailable]:
        keys = [self.key(h) for h in handles]
        if isinstance(self.redis, ClusterRedis):
            replies = await self._call(self.redis.script_each(LOAD_MANY, keys, [self.ttl_ms, self.slide_below_ms]))
            return [flat if isinstance(flat, StoreUnavailable) else self._parse(flat) for flat in replies]
        if self.cache is not None:
            return await self._load_cached(keys)
        replies = await self._call(
            self.redis.pipeline(*[command for key in keys for command in (("HGETALL", key), ("PTTL", key))])
        )
        sessions = [self._parse(flat) for flat in replies[::2]]
        self._slide_due(keys, sessions, replies[1::2])
        return sessions

    async def _load_cached(self, keys: list[str], copies: bool = True) -> list[Session | None]:
        """Reads over the tracking connection: the sessions the node holds a copy of, once the batch's one command
        there is answered (a PING when it holds them all: every invalidation sent before it is then handled); the
        others read with HGETALL and PTTL, and kept. See client_cache.py for why this reads every node's writes."""
        cache, loop = self.cache, self._loads.loop
        # A copy is served while more of its TTL remains than the slide threshold; past it the read goes to Redis.
        fresh_until = loop.time() + self.slide_below_ms / 1000
        held: list[int] = []
        missing: list[int] = []
        for i, key in enumerate(keys):
            if copies and cache.get(key, fresh_until) is not None:
                held.append(i)
            else:
                missing.append(i)
                cache.reading(key)
        commands = [command for i in missing for command in (("HGETALL", keys[i]), ("PTTL", keys[i]))]
        sent = loop.time()  # a copy's deadline counts from here: never later than the session's own
        results: list[Session | None] = [None] * len(keys)
        answered = 0
        try:
            replies = await self._call(self.reads.pipeline(*(commands or [("PING",)])))
            for n, i in enumerate(missing):
                session, ttl = self._parse_map(replies[2 * n]), replies[2 * n + 1]
                results[i] = session
                # Kept only while no slide is due: the slide (a PEXPIRE, a change) would invalidate it at once.
                cache.read(keys[i], session if ttl >= self.slide_below_ms else None, sent + ttl / 1000)
                answered += 1
        finally:
            for i in missing[answered:]:  # failed, or a reply that did not parse: nothing kept, nothing left counted
                cache.read(keys[i], None, 0.0)
        self._slide_due([keys[i] for i in missing], [results[i] for i in missing], replies[1::2])
        late = []
        for i in held:  # still held after the reply: no change to it was sent before the reply
            results[i] = cache.get(keys[i], float("-inf"))
            if results[i] is None:
                late.append(i)
        if late:  # changed meanwhile: read from Redis
            for i, session in zip(late, await self._load_cached([keys[i] for i in late], copies=False)):
                results[i] = session
        return results

    def _slide_due(self, keys: Sequence[str], sessions: Sequence[Session | None], ttls: Sequence[int]) -> None:
        """Slide the expiry of the read sessions due for it (PTTL under the threshold: -2 for a key gone since its
        HGETALL, nothing to slide; -1 for one without expiry, given one)."""
        due = [
            key
            for key, session, ttl in zip(keys, sessions, ttls)
            if session is not None and -2 < ttl < self.slide_below_ms
        ]
        if due:
            # Not waited for: the reads are answered now, as when the script slid them in the same call. The PEXPIREs
            # go on the store's connection, so any later change of this node finds them done; a read on the tracking
            # connection meanwhile may find one not done yet and slide it again, a no-op.
            slide = asyncio.ensure_future(self.redis.pipeline(*(("PEXPIRE", key, self.ttl_ms) for key in due)))
            self._slides.add(slide)
            slide.add_done_callback(self._slid)

    def _slid(self, slide: asyncio.Future) -> None:
        self._slides.discard(slide)
        if not slide.cancelled() and slide.exception() is not None:  # the sessions slide on their next read
            log.warning("redis: sliding the expiry of read sessions failed: %s", slide.exception())

    async def _increment_many(self, handles: Sequence[str]) -> list[Change[int] | None | StoreUnavailable]:
        replies = await self._call(
            self.redis.script_each(INCREMENT_MANY, [self.key(h) for h in handles], [self.ttl_ms, self.slide_below_ms])
        )
        return [
            counter if counter is None or isinstance(counter, StoreUnavailable) else Change(counter)
            for counter in replies
        ]

    async def set_data(self, handle: str, key: str, value: Any) -> Change[None] | None:
        if not is_valid_id(handle):
            return None
        result = await self._call(
            self.redis.script(
                SET_DATA, [self.key(handle)], [self.ttl_ms, "d:" + key, json.dumps(value), self.limits.max_data_keys]
            )
        )
        if result == -1:
            raise too_many_keys(self.limits.max_data_keys)
        return None if result is None else Change(None)

    async def delete_data(self, handle: str, key: str) -> Change[bool] | None:
        if not is_valid_id(handle):
            return None
        removed = await self._call(self.redis.script(DELETE_DATA, [self.key(handle)], [self.ttl_ms, "d:" + key]))
        return None if removed is None else Change(removed == 1)

    async def destroy(self, handle: str) -> None:
        if not is_valid_id(handle):
            return
        user = await self._call(self.redis.script(DESTROY, [self.key(handle)], []))
        if user and self.index_prefix:
            await self._call(self.redis.execute("SREM", self._index(user.decode()), self.member(handle)))

    async def rotate(self, handle: str, user: str) -> str | None:
        if not is_valid_id(handle):
            return None
        old = self.key(handle)
        flat = await self._call(self.redis.execute("HGETALL", old))
        session = self._parse(flat)
        if session is None:
            return None
        new = new_id()
        if session.user == user:
            # Write the new key first, then delete the old one: a crash in between leaves two valid keys for a moment,
            # never none. flat already holds every field in wire form.
            await self._create(new, session, list(flat))
        await self.destroy(handle)
        return new if session.user == user else None

    async def destroy_all(self, user: str) -> int:
        if not self.index_prefix:
            return await super().destroy_all(user)
        index = self._index(user)
        members = await self._call(self.redis.execute("SMEMBERS", index))
        if not members:
            return 0
        deleted = await self._call(self.redis.pipeline(*(("DEL", self.key_prefix + m.decode()) for m in members)))
        # Only the members ended here: a login meanwhile may have listed a new session (a later one: it stays).
        await self._call(self.redis.execute("SREM", index, *members))
        return sum(deleted)
