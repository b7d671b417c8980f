"""The drills' short form on the lab, their goals asserted: under a pool of 200 logged-in clients driving the balancer,
a clean stop of an app node and a rolling deploy that restarts every app node fail no request and lose no session,
a SIGKILL fails only requests that were on the killed node, and a frozen Redis fails requests with the app's JSON
503 within seconds. `./kit drill --all` runs the full set."""

from __future__ import annotations

import pytest

from drills.catalog import DRILLS, Params
from drills.cluster import Target

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
