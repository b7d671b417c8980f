"""The lean Redis connection (sample_app/stores/resp.py) on the real Redis: commands sent together share one waiter,
their replies come back in order (in one read of the socket or in many), an error reply among them raises, and a
connection lost under a batch fails it (503) while the next command reconnects."""

from __future__ import annotations

import asyncio

import pytest
import redis

from sample_app.stores.base import StoreUnavailable
from sample_app.stores.resp import LeanRedis, RedisError


@pytest.fixture
def lean(redis_server):
    loop = asyncio.new_event_loop()
    client = LeanRedis(redis_server.url)
    yield client, loop.run_until_complete
    loop.run_until_complete(client.close())
    loop.close()


def test_commands_sent_together_answer_in_order_with_concurrent_callers(lean):
    client, run = lean

    async def batches():
        await client.execute("DEL", "resp:n", "resp:h")
        return await asyncio.gather(
            client.pipeline(("INCR", "resp:n"), ("INCR", "resp:n"), ("GET", "resp:n")),
            client.execute("PING"),
            client.pipeline(("HSET", "resp:h", "a", "1"), ("HGETALL", "resp:h"), ("PTTL", "resp:h")),
            client.pipeline(
                ("INCR", "resp:n"),
            ),
        )

    first, pong, hash_, single = run(batches())
    assert first == [1, 2, b"2"]
    assert pong == b"PONG"
    assert hash_ == [1, [b"a", b"1"], -1]
    assert single == [3]


def test_an_error_reply_in_a_batch_raises_and_the_connection_goes_on(lean):
    client, run = lean
    run(client.execute("SET", "resp:s", "x"))
    with pytest.raises(RedisError, match="WRONGTYPE"):
        run(client.pipeline(("GET", "resp:s"), ("HGETALL", "resp:s"), ("PING",)))
    assert run(client.pipeline(("GET", "resp:s"), ("PING",))) == [b"x", b"PONG"]


def test_a_batch_whose_replies_arrive_in_pieces_gets_them_all_in_order(lean):
    """About 4 MB of replies: many reads of the socket, one waiter, the watchdog kept quiet while Redis answers."""
    client, run = lean
    values = [f"{i:06d}".encode() * 170 for i in range(4000)]
    assert run(client.pipeline(*(("ECHO", value) for value in values))) == values
    assert run(client.pipeline()) == [], "no commands, no waiter (it would take the next command's reply)"
    assert run(client.execute("PING")) == b"PONG"


def test_a_connection_lost_under_a_batch_fails_it_and_the_next_command_reconnects(lean, redis_server):
    client, run = lean
    ours = run(client.execute("CLIENT", "ID"))

    async def killed_under_a_batch():
        batch = asyncio.ensure_future(client.pipeline(("BLPOP", "resp:never", "30"), ("PING",)))
        await asyncio.sleep(0.2)  # the batch is out: Redis holds BLPOP's reply
        with redis.Redis.from_url(redis_server.url) as other:  # another connection kills ours, and only ours
            assert other.client_kill_filter(_id=ours) == 1
        return await asyncio.wait_for(batch, 1.5)  # before the watchdog's TIMEOUT (2 s) could be what failed it

    with pytest.raises(StoreUnavailable, match="connection lost: closed by server"):
        run(killed_under_a_batch())
    assert run(client.pipeline(("PING",), ("ECHO", "back"))) == [b"PONG", b"back"]
