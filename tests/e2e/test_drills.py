"""The drills' short form on the lab, their goals asserted: under a pool of 200 logged-in clients driving the balancer,
a clean stop of an app node and a rolling deploy that restarts every app node fail no request and lose no session,
a SIGKILL fails only requests that were on the killed node, a frozen Redis fails requests with the app's JSON 503
within seconds, and a store killed, or its whole host powered off, comes back with every answered write. `./kit drill
--all` runs the full set."""

from __future__ import annotations

import asyncio

import pytest

from drills.catalog import DRILLS, Params
from drills.cluster import Target
from drills.load import Load

pytestmark = pytest.mark.lab
INVENTORY = "inventories/lab.py"
SHORT = Params(clients=200, seconds=6)


@pytest.fixture(scope="module", params=["redis", "replication"])
def target(lab, request):
    target = Target(INVENTORY, {"session_strategy": request.param})
    applied = target.apply()
    assert applied.get("errors") == 0, applied
    yield target
    target.close()


@pytest.mark.parametrize("drill", ["node-stop", "rolling", "node-kill"])
def test_drill_meets_its_goals(target, drill):
    result = DRILLS[drill].run(target, SHORT)
    figures, goals = result["figures"], result["goals"]
    assert figures["requests"] > 1000, figures
    assert goals, f"{drill} sets goals for {target.strategy}"
    missed = {name: goal for name, goal in goals.items() if not goal["met"]}
    assert not missed, f"{drill} on {target.strategy}: {missed}; figures {figures}"
    print(
        f"{drill} on {target.strategy}: {figures['requests']} requests, {figures['failed']} failed, "
        f"{figures['sessions_lost']} sessions lost"
    )


@pytest.mark.parametrize("target", ["redis"], indirect=True)
def test_a_frozen_store_fails_requests_with_a_json_503_within_seconds(target):
    """store-freeze: Redis stopped with SIGSTOP for 5 s under the same load (it accepts connections and acknowledges
    what is sent, but answers nothing). Every failure is the app's JSON 503 (no 502/504 from the balancer giving up
    on a hung request), none of the requests takes longer than the drill's bound, and no session is lost. The app
    tests freeze PostgreSQL too (tests/app/test_bad_input.py)."""
    result = DRILLS["store-freeze"].run(target, SHORT)
    figures, goals = result["figures"], result["goals"]
    assert figures["requests"] > 1000 and figures["failed"] > 0, f"the freeze failed no request: {figures}"
    missed = {name: goal for name, goal in goals.items() if not goal["met"]}
    assert not missed, f"store-freeze on {target.strategy}: {missed}; figures {figures}"
    print(
        f"store-freeze on {target.strategy}: {figures['failed']} of {figures['requests']} failed, longest "
        f"{figures['longest_request_seconds']} s, failures ended {figures['failures_end_after_thaw_seconds']} s "
        f"after the thaw"
    )


@pytest.mark.parametrize("target", ["redis", "database"], indirect=True)
def test_a_killed_store_comes_back_with_every_answered_write(target):
    """store-kill: Redis or PostgreSQL SIGKILLed under the load (nothing saved on the way down), started again by
    systemd: every failure a JSON 503, no session lost, no answered increment lost (Redis from its append-only file,
    PostgreSQL from its write-ahead log), and the app serving within 2 s of the store answering again."""
    result = DRILLS["store-kill"].run(target, SHORT)
    figures, goals = result["figures"], result["goals"]
    assert figures["requests"] > 1000 and figures["failed"] > 0, f"the kill failed no request: {figures}"
    missed = {name: goal for name, goal in goals.items() if not goal["met"]}
    assert not missed, f"store-kill on {target.strategy}: {missed}; figures {figures}"
    assert figures["increments_lost"] == 0, figures  # a process crash: the OS holds what Redis wrote, even everysec
    print(
        f"store-kill on {target.strategy}: {figures['failed']} of {figures['requests']} failed, store back in "
        f"{figures['store_back_seconds']} s, writes back {figures['seconds_until_writes']} s after the kill, app "
        f"serving {figures['serving_after_store_seconds']} s after the store"
    )


@pytest.mark.parametrize("target", ["database"], indirect=True)
def test_a_store_host_that_loses_power_boots_with_every_answered_write(target):
    """power-off: the store's host (on the lab's layout, the balancer's too) has every process killed at once under
    the load, stays off 2 s and boots again. The same losses as a crash of the store alone: none; every failure the
    app's JSON 503 or a connection refused or reset at once (no hang); and an apply afterwards changes nothing."""
    result = DRILLS["power-off"].run(target, SHORT)
    figures, goals = result["figures"], result["goals"]
    assert figures["requests"] > 1000 and figures["failed"] > 0, f"the power-off failed no request: {figures}"
    missed = {name: goal for name, goal in goals.items() if not goal["met"]}
    assert not missed, f"power-off on {target.strategy}: {missed}; figures {figures}"
    assert figures["increments_lost"] == 0, figures
    again = target.apply()
    assert again.get("changed") == 0 and again.get("errors") == 0, f"an apply after the power-off changed: {again}"
    print(
        f"power-off on {target.strategy}: {figures['failed']} of {figures['requests']} failed, writes back "
        f"{figures['seconds_until_writes']} s after the power went"
    )


@pytest.mark.parametrize("target", ["redis"], indirect=True)
def test_turning_the_append_only_file_on_keeps_the_sessions(target):
    """A Redis deployed without the append-only file (as the kit did before it) that an apply turns it on for: Redis
    would restart into an empty file; the deploy has it write the file first, so every session and its counter stay."""
    off = target.apply({"redis_appendonly": False})
    assert off.get("errors") == 0, off
    target.wait_settled()

    async def sessions_through_the_switch() -> tuple[dict, dict, Load]:
        load = Load(target.lb_url, clients=20, ssl_context=target.ssl_context())
        await load.open()
        try:
            assert await load.log_in_all() == 20
            for client in load.clients:
                for _ in range(3):
                    outcome, _ = await load.request(client, "increment", "POST", "/session/counter")
                    assert outcome.status == 200, outcome
                    client.increments += 1
            on = await asyncio.to_thread(target.apply)
            await asyncio.to_thread(target.wait_settled)
            return on, await load.check_all(), load
        finally:
            await load.close()

    try:
        on, checked, load = asyncio.run(sessions_through_the_switch())
        assert on.get("errors") == 0 and on.get("changed", 0) > 0, on
        assert checked["gone_at_end"] == 0 and checked["counter_mismatch"] == 0, checked
        assert [c.counter_final for c in load.clients] == [3] * 20
    finally:
        target.apply()
