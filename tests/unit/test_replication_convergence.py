"""replication converges: three in-process replicas (the real ReplicatedStore, no network), random changes on each, and
their deltas delivered by the test in random orders, with duplicates and delays. At the end every replica holds the
same sessions, and that state is the one the versions say: for each field the value of its newest change, and no
session that was deleted anywhere (logout, rotation), whatever arrived after the deletion."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sample_app.stores.base import Limits, Rejected, Session
from sample_app.stores.replicated import DELTA_MAX_AGE, JOINING, MAX_SKEW, ReplicatedStore

NODES = ("a", "b", "c")
KEYS = ("cart", "theme", "lang")
OPS = ("login", "increment", "set", "unset", "logout", "rotate", "read")


def replicas() -> dict[str, ReplicatedStore]:
    stores = {}
    for name in NODES:
        store = ReplicatedStore(
            Limits(ttl=600, max_data_keys=64),
            name,
            tuple(f"http://{other}" for other in NODES if other != name),
            "key",
            mode="async",
        )
        for peer in store.peers:
            peer.state = JOINING  # deltas queue for it; the test is the network and takes them from the queue
        stores[name] = store
    return stores


def outgoing(store: ReplicatedStore) -> list[tuple[str, dict]]:
    """The deltas a replica queued since last time, with the replica each is for."""
    sent = []
    for peer in store.peers:
        sent += [(peer.url.removeprefix("http://"), delta) for delta in peer.queue]
        peer.queue.clear()
    return sent


async def change(store: ReplicatedStore, op: str, handle: str | None, key: str, user: str) -> str | None:
    """One client request on one replica; returns a new handle when it made one."""
    if op == "login" or handle is None:
        return await store.create(Session(user=user))
    if op == "increment":
        await store.increment(handle)
    elif op == "set":
        try:
            await store.set_data(handle, key, {"by": store.node, "n": store.clock})
        except Rejected:
            pass
    elif op == "unset":
        await store.delete_data(handle, key)
    elif op == "logout":
        if await store.load(handle) is not None:
            await store.destroy(handle)
    elif op == "rotate":
        return await store.rotate(handle, user)
    else:
        await store.load(handle)
    return None


def state(store: ReplicatedStore) -> dict:
    return {
        "sessions": {h: s.as_json() for h, s in store.sessions.items()},
        "early": store.early,
        "tombstones": set(store.tombstones),
        "versions": store.versions,
    }


def expected(created: list[dict]) -> dict[str, dict]:
    """What the versions say the sessions must be: each field's newest value; deleted sessions gone."""
    deleted = {delta["sid"] for delta in created if "del" in delta}
    newest: dict[str, dict[str, list]] = {}
    for delta in created:
        if delta["sid"] in deleted:
            continue
        fields = newest.setdefault(delta["sid"], {})
        for name, entry in delta.get("f", {}).items():
            if name not in fields or tuple(entry[:2]) > tuple(fields[name][:2]):
                fields[name] = entry
    sessions = {}
    for handle, fields in newest.items():
        if "user" in fields:
            data = {name[2:]: entry[2] for name, entry in fields.items() if name.startswith("d:") and len(entry) > 2}
            counter = sum(entry[2] for name, entry in fields.items() if name == "counter" or name.startswith("c:"))
            sessions[handle] = {
                "user": fields["user"][2],
                "counter": counter,
                "data": data,
                "created": fields["created"][2],
            }
    return sessions


step = st.one_of(
    st.tuples(
        st.just("change"),
        st.sampled_from(NODES),
        st.sampled_from(OPS),
        st.integers(0, 30),
        st.sampled_from(KEYS),
        st.sampled_from(("ann", "bob")),
    ),
    st.tuples(st.just("deliver"), st.integers(0, 10_000), st.booleans()),  # which delta; keep a duplicate for later
)


async def run(steps, finale) -> tuple[dict[str, ReplicatedStore], list[dict]]:
    stores, handles, in_flight, created = replicas(), [], [], []
    for kind, *args in steps:
        if kind == "change":
            node, op, pick, key, user = args
            store = stores[node]
            handle = handles[pick % len(handles)] if handles else None
            new = await change(store, op, handle, key, user)
            if new:
                handles.append(new)
            sent = outgoing(store)
            created += [delta for target, delta in sent if target == NODES[(NODES.index(node) + 1) % 3]]
            in_flight += [(node, target, delta) for target, delta in sent]
        elif in_flight:
            pick, duplicate = args
            origin, target, delta = (
                in_flight[pick % len(in_flight)] if duplicate else in_flight.pop(pick % len(in_flight))
            )
            stores[target].merge(delta)
    for index in finale(len(in_flight)):  # what is still on the way arrives in any order
        origin, target, delta = in_flight[index]
        stores[target].merge(delta)
    return stores, created


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=60), data=st.data())
def test_replicas_converge_whatever_the_order_duplicates_and_delays(steps, data):
    def finale(count):
        return data.draw(st.permutations(range(count)), label="arrival order of the deltas still on the way")

    stores, created = asyncio.run(run(steps, finale))
    first = state(stores["a"])
    for name in NODES[1:]:
        assert state(stores[name]) == first, f"replica {name} differs from replica a"
    assert first["early"] == {}, "every creation arrived: no change may wait for its session any more"
    assert first["sessions"] == expected(created), "the replicas agree, but not on the newest version of each field"
    for delta in created:
        if "del" in delta:
            assert delta["sid"] not in first["sessions"], "a deleted session came back"


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, max_size=40), data=st.data())
def test_batches_in_order_with_retried_duplicates_and_a_late_snapshot(steps, data):
    """The real path: apply() of batches per link, in order, some sent twice (a retry after a lost answer, skipped by
    sequence number); then a fourth replica that starts from a snapshot of one of them ends equal too."""
    stores, links = replicas(), {}

    async def scenario():
        handles = []
        for kind, *args in steps:
            if kind != "change":
                continue
            node, op, pick, key, user = args
            new = await change(stores[node], op, handles[pick % len(handles)] if handles else None, key, user)
            if new:
                handles.append(new)
            for target, delta in outgoing(stores[node]):
                links.setdefault((node, target), []).append(delta)

    asyncio.run(scenario())
    for (origin, target), deltas in links.items():
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(deltas) - 1)), max_size=4), label="batch cuts"))
        batches = [deltas[i:j] for i, j in zip([0, *cuts], [*cuts, len(deltas)]) if deltas[i:j]]
        for batch in batches:
            body = {"origin": origin, "epoch": stores[origin].epoch, "deltas": batch}
            stores[target].apply(body)
            if data.draw(st.booleans(), label="sent again"):
                assert stores[target].apply(body) == 0, "a batch sent again must change nothing"
    late = ReplicatedStore(Limits(ttl=600, max_data_keys=64), "d", (), "key")
    late.merge_snapshot(stores[data.draw(st.sampled_from(NODES), label="snapshot from")].snapshot())
    first = state(stores["a"])
    for store in (stores["b"], stores["c"], late):
        assert state(store) == first


def test_tombstones_and_old_deltas_are_bounded():
    """A tombstone outlives anything that could overtake it, and no longer: deltas older than DELTA_MAX_AGE are
    dropped on arrival, and the tombstone goes after TTL + DELTA_MAX_AGE + 2 * MAX_SKEW."""
    stores = replicas()

    async def scenario():
        handle = await stores["a"].create(Session(user="ann"))
        creation = outgoing(stores["a"])[0][1]
        await stores["a"].destroy(handle)
        deletion = outgoing(stores["a"])[0][1]
        return handle, creation, deletion

    handle, creation, deletion = asyncio.run(scenario())
    b = stores["b"]
    b.merge(deletion)
    b.merge(creation)  # overtaken by the deletion: stays deleted
    assert handle not in b.sessions and handle in b.tombstones
    b.tombstones[handle] -= b.tombstone_keep - 1  # not yet past its keep
    b.purge_expired()
    assert handle in b.tombstones
    b.tombstones[handle] -= 2
    b.purge_expired()
    assert handle not in b.tombstones, "a tombstone must not be kept forever"
    late = {**creation, "seq": 1, "ts": creation["ts"] - DELTA_MAX_AGE - 1}
    assert b.apply({"origin": "a", "epoch": stores["a"].epoch, "deltas": [late]}) == 0 and b.stale == 1
    assert handle not in b.sessions, "a delta too old to be ordered against a tombstone must be dropped"
    assert b.tombstone_keep > DELTA_MAX_AGE + 2 * MAX_SKEW
