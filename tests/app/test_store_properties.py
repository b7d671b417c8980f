"""Each store, driven directly (async) against the real Redis and PostgreSQL: any sequence of set_data, delete_data,
increment, rotate and load on a session behaves like a plain dict and a counter, and every value the app accepts
(sample_app.app.parse_json) comes back as the same JSON value. Stores are built from the strategy table with the
settings the app would get, as the app builds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from harness.cluster import strategy_env
from sample_app.app import parse_json
from sample_app.settings import STRATEGIES, Settings
from sample_app.stores import build_store
from sample_app.stores.base import Rejected, Session, SessionStore

EXAMPLES = 100


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers by their decimal value (PostgreSQL's jsonb gives 1e300 back written out as
    1000...0: the same number), objects whatever their key order."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return Decimal(repr(a)) == Decimal(repr(b))
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


# What the app accepts: finite numbers, no NUL, no unpaired surrogate (category Cs), nesting well under 32 levels.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
KEYS = st.sampled_from(["a", "b", "k-1", "x.y", "_"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("increment")),
        st.tuples(st.just("rotate")),
        st.tuples(st.just("load")),
    ),
    min_size=1,
    max_size=12,
)


@dataclasses.dataclass
class Driven:
    strategy: str
    store: SessionStore
    run: Callable[[Awaitable], Any]


@pytest.fixture(scope="module", params=STRATEGIES)
def store(request, backends):
    strategy = request.param
    settings = Settings.from_env({**strategy_env(strategy, backends), "NODE_NAME": "property"})
    _, store = build_store(settings)
    loop = asyncio.new_event_loop()  # one loop for the module: the store's connections belong to it
    loop.run_until_complete(store.start())
    yield Driven(strategy, store, loop.run_until_complete)
    loop.run_until_complete(store.close())
    loop.close()


async def scenario(driven: Driven, operations: list[tuple]) -> None:
    store, strategy = driven.store, driven.strategy
    revocable = strategy != "cookie"  # a copied cookie stays valid until it expires (README)
    handle = await store.create(Session(user="prop"))
    data: dict[str, Any] = {}
    counter = 0
    for operation in operations:
        name, *args = operation
        if name == "set":
            key, value = args
            assert json_equal(parse_json(json.dumps(value).encode()), value), "the app's rule refuses the value"
            try:
                change = await store.set_data(handle, key, value)
            except Rejected as refused:  # only the signed cookie has a size limit of its own
                assert strategy == "cookie" and refused.code == "cookie_too_large", refused.code
                continue
            assert change is not None
            data[key] = value
        elif name == "delete":
            change = await store.delete_data(handle, args[0])
            assert change is not None and change.value == (args[0] in data)
            data.pop(args[0], None)
        elif name == "increment":
            change = await store.increment(handle)
            counter += 1
            assert change is not None and change.value == counter
        elif name == "rotate":
            new = await store.rotate(handle, "prop")
            assert new is not None and new != handle
            if revocable:
                assert await store.load(handle) is None, "the old id still reads after rotation"
            handle, change = new, None
        else:
            change = None
        if change is not None and change.handle is not None:
            handle = change.handle  # the cookie store re-issues its handle on every change
        session = await store.load(handle)
        assert session is not None and session.user == "prop" and session.counter == counter
        assert json_equal(session.data, data), f"after {operation[:2]}: {session.data!r} != {data!r}"
    await store.destroy(handle)
    if revocable:
        assert await store.load(handle) is None


@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(operations=OPERATIONS)
def test_any_sequence_of_changes_reads_back_like_a_dict(store, operations):
    store.run(scenario(store, operations))
