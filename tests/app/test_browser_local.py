"""A real browser (Debian's chromium, driven by selenium through chromium-driver) on the app's page, through Nginx in
front of three real app nodes on loopback: log in, press increment ten times, reload; the page shows that more than
one node served the session and the counter is at ten; log out and the page shows no session. For redis, and for
token (no cookie: the page keeps the token itself). tests/e2e/test_browser.py runs the same walk on the lab.

The walk and the browser live here; the lab's test imports them. Screenshots: report/browser-local-STRATEGY.png."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--window-size=1000,1000",
)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the kit extras: ./kit setup)"
    if not (CHROMIUM and DRIVER):
        return "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


def trusting(certificate) -> tuple[str, ...]:
    """Chromium's flags to trust a balancer's self-signed certificate (lb_tls) and nothing else: its public key
    pinned (--ignore-certificate-errors-spki-list, honoured with --user-data-dir, which browser() sets)."""
    from session_kit.tls import spki_sha256

    return (f"--ignore-certificate-errors-spki-list={spki_sha256(certificate)}",)


@contextlib.contextmanager
def browser(flags: tuple[str, ...] = ()):
    """Headless chromium with a fresh profile, through the Debian chromedriver (never a downloaded one); `flags`:
    more of chromium's flags (trusting(certificate) for a balancer's self-signed certificate)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="kit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + tuple(flags) + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def walk(driver, url: str, strategy: str, screenshot: Path, increments: int = 10) -> dict[str, str]:
    """Log in, increment, reload, check, log out, check; returns what the page showed after the reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text(element_id: str) -> str:
        return driver.find_element(By.ID, element_id).text

    def until(check, what: str) -> None:
        WebDriverWait(driver, 15, poll_frequency=0.05).until(lambda _: check(), message=what)

    driver.get(url + "/")
    assert text("strategy") == strategy
    until(
        lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-session") == "no",
        "the page reads the session on load: none yet",
    )
    name = driver.find_element(By.ID, "name")
    name.clear()
    name.send_keys("browser")
    driver.find_element(By.ID, "login").click()
    until(lambda: text("user") == "browser", "logged in as browser")
    assert text("counter") == "0"
    for n in range(1, increments + 1):
        driver.find_element(By.ID, "increment").click()
        until(lambda n=n: text("counter") == str(n), f"the counter at {n}")
    if strategy == "token":
        cookies = driver.get_cookies()
        assert not cookies, f"token: no cookie at all, only the page's bearer token: {cookies}"
        assert driver.execute_script("return sessionStorage.getItem('token')"), "the page keeps the token"
    driver.refresh()
    until(lambda: text("counter") == str(increments), f"after a reload the counter is still {increments}")
    assert text("user") == "browser"
    travel = driver.find_element(By.ID, "travel")
    seen = {
        "counter": text("counter"),
        "nodes": text("nodes"),
        "travel": travel.text,
        "distinct": travel.get_attribute("data-count"),
    }
    assert int(seen["distinct"]) > 1, f"more than one node served the session: {seen}"
    assert "different nodes served this one session" in seen["travel"]
    served = [row.find_elements(By.TAG_NAME, "td")[3].text for row in driver.find_elements(By.CSS_SELECTOR, "#log tr")]
    assert len(set(served)) > 1, f"the list of requests names more than one node: {served}"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    driver.find_element(By.ID, "logout").click()
    until(lambda: text("user") == "no session", "after logout the page shows no session")
    assert text("counter") == "-"
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-session") == "no"
    if strategy == "token":
        assert driver.execute_script("return sessionStorage.getItem('token')") is None, "the token is dropped"
    driver.refresh()
    until(lambda: text("user") == "no session", "a reload after logout: still no session")
    return seen


# -- on loopback -------------------------------------------------------------------------------------------------------

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed"),
]


@pytest.fixture(params=["redis", "token"])
def balanced(request, backends):
    """Three real app nodes of the strategy behind a real Nginx (round robin): the balancer's URL."""
    from harness.cluster import Cluster
    from harness.nginx import Nginx

    cluster = Cluster(request.param, backends, size=3).start()
    nginx = Nginx([url.removeprefix("http://") for url in cluster.urls]).start()
    try:
        yield request.param, nginx.url
    finally:
        nginx.destroy()
        cluster.destroy()


def test_the_page_shows_the_session_travel_between_nodes_in_a_real_browser(balanced):
    strategy, url = balanced
    with browser() as driver:
        seen = walk(driver, url, strategy, ROOT / "report" / f"browser-local-{strategy}.png")
    assert seen["counter"] == "10"


@pytest.mark.parametrize("strategy", ["redis", "token"])
def test_the_same_walk_over_the_kits_tls_site(strategy, backends, tmp_path):
    """The kit's own site with lb_tls in front of the nodes, its self-signed certificate trusted by its pinned key
    alone (as tests/e2e/test_browser.py trusts the lab's): the page works over HTTPS; the cookie is Secure."""
    from session_kit import tls
    from tests.app.test_routing import balanced_site

    pair = tls.self_signed(tmp_path, "browser", ["127.0.0.1"])
    with balanced_site(strategy, "round_robin", tls=pair, backends=backends, extra_env={"COOKIE_SECURE": "true"}) as (
        _,
        nginx,
    ):
        with browser(trusting(pair[0])) as driver:
            seen = walk(driver, nginx.tls_url, strategy, ROOT / "report" / f"browser-local-tls-{strategy}.png")
            assert driver.current_url.startswith("https://")
    assert seen["counter"] == "10"
