"""token: an opaque bearer token (256 random bits) in the Authorization header, no cookie at all.

Redis stores the session under the SHA-256 of the token, never the token itself: a leaked dump or replica does not
hand out working credentials. Each user's token hashes are listed in a set, so POST /logout/all revokes every token
of that user (every device) at once. Logout revokes the presented token only.

The index (user-tokens:<user>) and the sessions (token:<hash>) are separate keys in separate slots on Redis Cluster:
no hash tag could join them, since a token must stay opaque (it cannot name its user) and the index is found by user.
So the index is kept by commands of its own, in an order that never loses a live session from it: a login writes the
session, then lists it; a logout deletes the session, then unlists it; /logout/all deletes each listed session, then
unlists those only.
"""

from __future__ import annotations

import hashlib

from .redis import RedisStore


class TokenStore(RedisStore):
    key_prefix = "token:"
    index_prefix = "user-tokens:"

    def member(self, handle: str) -> str:
        return hashlib.sha256(handle.encode()).hexdigest()
