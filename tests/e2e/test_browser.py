"""A real browser on the lab: Debian's chromium (through selenium and chromium-driver) opens the app's page through the
lab's load balancer, for redis and for token (no cookie: the page keeps the token itself). Log in, press increment ten
times, reload: the page shows that more than one node served the session and the counter is at ten; log out: the
page shows no session. The screenshot goes to report/browser-STRATEGY.png. Over HTTPS (lb_tls, the kit's default):
chromium trusts the inventory's self-signed certificate by its pinned public key, nothing else.

The walk and the browser are tests/app/test_browser_local.py's (which runs them on loopback); here only the balancer
is the lab's."""

from __future__ import annotations

import pytest

import tests.app.test_browser_local as local
from drills.cluster import Target

INVENTORY = "inventories/lab.py"

pytestmark = [pytest.mark.lab, pytest.mark.skipif(local.missing() is not None, reason=local.missing() or "")]


@pytest.fixture(scope="module", params=["redis", "token"])
def lab_balancer(lab, request):
    """The lab deployed with the strategy (round robin, as the kit's default for both): (strategy, balancer URL,
    chromium's flags to trust the balancer's certificate)."""
    target = Target(INVENTORY, {"session_strategy": request.param})
    applied = target.apply()
    assert applied.get("errors") == 0, applied
    certificate = target.deployment.tls_certificate
    yield request.param, target.lb_url.rstrip("/"), local.trusting(certificate) if certificate else ()
    target.close()


def test_the_page_shows_the_session_travel_between_the_labs_nodes(lab_balancer):
    strategy, url, flags = lab_balancer
    with local.browser(flags) as driver:
        seen = local.walk(driver, url, strategy, local.ROOT / "report" / f"browser-{strategy}.png")
        assert driver.current_url.startswith(url), driver.current_url
    assert seen["counter"] == "10"
