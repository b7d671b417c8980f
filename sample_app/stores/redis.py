"""redis: one Redis hash per session (like Spring Session), shared by every node.

- Fields: user, counter, created, and d:<key> for each data value (JSON). Only the changed field is written.
- Every operation is one Lua script (one round trip, atomic): a change first checks that the session still exists
  (a change racing a logout must not bring back a half session), then HINCRBY/HSET/HDEL; every operation, reads
  included, slides the expiry (PEXPIRE).
- Id rotation (login on an existing session) writes the new key and deletes the old one, never RENAME (RENAME fails
  across slots on Redis Cluster).
- With an index prefix (the token store), each session is also listed in a per-user set, so one call can end all
  of a user's sessions.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .batching import Batcher
from .base import Change, Limits, Session, SessionStore, StoreUnavailable, is_valid_id, new_id, too_many_keys
from .resp import LeanRedis, RedisError

_FIXED_FIELDS = 3  # user, counter, created

# The per-user index has no TTL of its own (its sessions slide theirs on every use); instead each login drops the
# members whose session has expired, so the set stays as small as the user's live sessions.
CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  for _, member in ipairs(redis.call('SMEMBERS', ARGV[2])) do
    if redis.call('EXISTS', ARGV[4] .. member) == 0 then redis.call('SREM', ARGV[2], member) end
  end
  redis.call('SADD', ARGV[2], ARGV[3])
end
return 1
"""

# Reads and increments of one event-loop turn go to Redis as one script call over all their keys (batching.py):
# one command to pack, send, parse and wait for instead of one per request.
LOAD_MANY = """
local result = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then redis.call('PEXPIRE', key, ARGV[1]) end
  result[i] = fields
end
return result
"""

INCREMENT_MANY = """
local result = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    result[i] = redis.call('HINCRBY', key, 'counter', 1)
    redis.call('PEXPIRE', key, ARGV[1])
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

DESTROY = """
local user = redis.call('HGET', KEYS[1], 'user')
redis.call('DEL', KEYS[1])
if user and ARGV[1] ~= '' then redis.call('SREM', ARGV[1] .. user, ARGV[2]) end
return 1
"""

DESTROY_ALL = """
local n = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. member)
end
redis.call('DEL', KEYS[1])
return n
"""


class RedisStore(SessionStore):
    key_prefix = "session:"
    index_prefix = ""  # "" keeps no per-user index

    def __init__(self, limits: Limits, redis: LeanRedis):
        super().__init__(limits)
        self.redis = redis
        self.ttl_ms = limits.ttl * 1000
        self._loads = Batcher(self._load_many)
        self._increments = Batcher(self._increment_many)

    async def close(self) -> None:
        await self.redis.close()

    async def ping(self) -> None:
        await self._call(self.redis.execute("PING"))

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
        await self._call(self.redis.script(
            CREATE, [self.key(handle)],
            [self.ttl_ms, self._index(session.user), self.member(handle), self.key_prefix, *fields]))
        return handle

    async def create(self, session: Session) -> str:
        fields = ["user", session.user, "counter", session.counter, "created", repr(session.created)]
        for name, value in session.data.items():
            fields += ["d:" + name, json.dumps(value)]
        return await self._create(new_id(), session, fields)

    @staticmethod
    def _parse(flat: list[bytes]) -> Session | None:
        if not flat:
            return None
        pairs = iter(flat)
        fields = dict(zip(pairs, pairs))
        user, counter, created = fields.pop(b"user"), fields.pop(b"counter"), fields.pop(b"created")
        # What is left are the d:<key> fields.
        return Session(user=user.decode(), counter=int(counter), created=float(created),
                       data={name[2:].decode(): json.loads(value) for name, value in fields.items()})

    async def _load_many(self, handles: Sequence[str]) -> list[Session | None]:
        replies = await self._call(self.redis.script(LOAD_MANY, [self.key(h) for h in handles], [self.ttl_ms]))
        return [self._parse(flat) for flat in replies]

    async def _increment_many(self, handles: Sequence[str]) -> list[Change[int] | None]:
        replies = await self._call(self.redis.script(INCREMENT_MANY, [self.key(h) for h in handles], [self.ttl_ms]))
        return [None if counter is None else Change(counter) for counter in replies]

    async def load(self, handle: str) -> Session | None:
        if not is_valid_id(handle):
            return None
        return await self._loads.submit(handle)

    async def increment(self, handle: str) -> Change[int] | None:
        if not is_valid_id(handle):
            return None
        return await self._increments.submit(handle)

    async def set_data(self, handle: str, key: str, value: Any) -> Change[None] | None:
        if not is_valid_id(handle):
            return None
        result = await self._call(self.redis.script(
            SET_DATA, [self.key(handle)], [self.ttl_ms, "d:" + key, json.dumps(value), self.limits.max_data_keys]))
        if result == -1:
            raise too_many_keys(self.limits.max_data_keys)
        return None if result is None else Change(None)

    async def delete_data(self, handle: str, key: str) -> Change[bool] | None:
        if not is_valid_id(handle):
            return None
        removed = await self._call(self.redis.script(DELETE_DATA, [self.key(handle)], [self.ttl_ms, "d:" + key]))
        return None if removed is None else Change(removed == 1)

    async def destroy(self, handle: str) -> None:
        if is_valid_id(handle):
            await self._call(self.redis.script(DESTROY, [self.key(handle)], [self.index_prefix, self.member(handle)]))

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
        return await self._call(self.redis.script(DESTROY_ALL, [self._index(user)], [self.key_prefix]))

