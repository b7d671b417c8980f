"""ClientCache's bookkeeping (sample_app/stores/client_cache.py): a read raced by a change is never kept, a lost
connection or Redis's "invalidate everything" drops every copy, and the copies stay within their capacity. The
same cache on the real Redis, across nodes: tests/app/test_client_cache.py."""

from __future__ import annotations

from sample_app.stores.client_cache import ClientCache


def test_a_read_answered_and_kept_is_served_until_its_deadline():
    cache = ClientCache(10)
    cache.reading("k")
    cache.read("k", "v1", deadline=100.0)
    assert cache.get("k", fresh_until=99.0) == "v1"
    assert cache.get("k", fresh_until=100.0) is None, "served past its deadline"
    assert not cache.filling and not cache.spoiled


def test_a_change_while_a_read_is_out_spoils_that_read():
    cache = ClientCache(10)
    cache.reading("k")
    cache.invalidated([b"k"])  # the reply may hold the value from before the change
    cache.read("k", "old", deadline=100.0)
    assert cache.get("k", 0.0) is None, "a read raced by a change was kept"
    cache.reading("k")  # the next read of it is kept again
    cache.read("k", "new", deadline=100.0)
    assert cache.get("k", 0.0) == "new"


def test_two_reads_out_when_the_change_comes_are_both_spoiled():
    cache = ClientCache(10)
    cache.reading("k")
    cache.reading("k")
    cache.invalidated([b"k"])
    cache.read("k", "a", deadline=100.0)
    cache.read("k", "b", deadline=100.0)
    assert cache.get("k", 0.0) is None
    assert not cache.filling and not cache.spoiled, "bookkeeping left behind"


def test_a_change_drops_the_copy_and_only_that_one():
    cache = ClientCache(10)
    for key in ("a", "b"):
        cache.reading(key)
        cache.read(key, key.upper(), deadline=100.0)
    cache.invalidated([b"a", b"unknown"])
    assert (cache.get("a", 0.0), cache.get("b", 0.0)) == (None, "B")


def test_a_lost_connection_or_invalidate_everything_drops_every_copy_and_spoils_reads_out():
    for drop in (lambda cache: cache.lost(), lambda cache: cache.invalidated(None)):
        cache = ClientCache(10)
        cache.reading("held")
        cache.read("held", "H", deadline=100.0)
        cache.reading("out")
        drop(cache)
        cache.read("out", "O", deadline=100.0)
        assert (cache.get("held", 0.0), cache.get("out", 0.0)) == (None, None)


def test_a_failed_or_unkept_read_keeps_nothing_and_leaves_no_bookkeeping():
    cache = ClientCache(10)
    cache.reading("k")
    cache.read("k", None, 0.0)
    assert cache.get("k", -1.0) is None and not cache.filling


def test_copies_stay_within_the_capacity_the_oldest_going_first():
    cache = ClientCache(2)
    for key in ("a", "b", "c"):
        cache.reading(key)
        cache.read(key, key, deadline=100.0)
    assert sorted(cache.copies) == ["b", "c"]
    none = ClientCache(0)
    none.reading("a")
    none.read("a", "a", deadline=100.0)
    assert not none.copies
