"""Inventory checks: one line naming what is wrong, before any host is touched."""

from __future__ import annotations

import pytest

from session_kit.defaults import ALL_DEFAULTS
from session_kit.strategies import STRATEGIES, app_environment, lb_method
from session_kit.validate import KitError, check_data, check_groups

GOOD = {**ALL_DEFAULTS, "inventory_name": "test"}
GROUPS = {"lb": ["l"], "app": ["a1", "a2"], "redis": ["r"], "db": ["d"]}


def test_defaults_pass():
    check_data(GOOD)
    check_groups("redis", GROUPS)


@pytest.mark.parametrize("change, named", [
    ({"session_strategy": "memcached"}, "session_strategy"),
    ({"lb_method": "least_conn"}, "lb_method"),
    ({"session_strategy": "sticky", "lb_method": "round_robin"}, "lb_method"),
    ({"app_port": "8000"}, "app_port"),
    ({"redis_port": 0}, "redis_port"),
    ({"app_session_ttl": True}, "app_session_ttl"),
    ({"redis_prot": 6379}, "redis_prot"),
    ({"inventory_name": None}, "inventory_name"),
    ({"postgres_user": "drop table"}, "postgres_user"),
    ({"private_ip": "0.0.0.0"}, "private_ip"),
])
def test_bad_values_name_themselves(change, named):
    with pytest.raises(KitError) as error:
        check_data({**GOOD, **change})
    assert str(error.value).startswith(named + ":") and "\n" not in str(error.value)


def test_typo_gets_a_suggestion():
    with pytest.raises(KitError, match="did you mean redis_port"):
        check_data({**GOOD, "redis_prot": 1})


@pytest.mark.parametrize("strategy, missing", [("database", "db"), ("redis", "redis"), ("token", "redis")])
def test_strategy_needs_its_group(strategy, missing):
    with pytest.raises(KitError, match=f"^{missing}: group is empty, but session_strategy={strategy} needs it$"):
        check_groups(strategy, {**GROUPS, missing: []})


def test_two_app_nodes_and_one_balancer():
    with pytest.raises(KitError, match="^app: needs two or more"):
        check_groups("cookie", {**GROUPS, "app": ["a1"]})
    with pytest.raises(KitError, match="^lb: needs exactly one"):
        check_groups("cookie", {**GROUPS, "lb": ["l1", "l2"]})


def test_default_balancing_per_strategy():
    assert {s: lb_method({"session_strategy": s}) for s in STRATEGIES} == {
        "cookie": "round_robin", "sticky": "ip_hash", "database": "round_robin",
        "replication": "round_robin", "redis": "round_robin", "token": "round_robin"}
    assert lb_method({"session_strategy": "replication", "lb_method": "hash_cookie"}) == "hash_cookie"


def test_app_environment_is_valid_for_the_app():
    """What the deploy writes into app.env is accepted by the app's own settings check, for every strategy."""
    from sample_app.settings import Settings
    secrets = {"cookie_secret_key": "k" * 43, "redis_password": "p", "postgres_password": "q",
               "replication_key": "r"}
    for strategy in STRATEGIES.values():
        env = app_environment(strategy, GOOD, secrets, node="n1", private_ip="10.0.0.2", peers=["10.0.0.3"],
                              redis_ip="10.0.0.9", db_ip="10.0.0.8")
        assert Settings.from_env(env).session_strategy == strategy.name


def test_secrets_are_generated_once_with_mode_0600(tmp_path, monkeypatch):
    from session_kit import secrets
    first = secrets.load(tmp_path, "inv")
    path = secrets.secrets_file(tmp_path, "inv")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert secrets.load(tmp_path, "inv") == first
    assert len(set(first.values())) == len(first) and all(len(v) >= 40 for v in first.values())
    monkeypatch.setenv("SESSION_KIT_REDIS_PASSWORD", "from-the-environment")
    assert secrets.load(tmp_path, "inv")["redis_password"] == "from-the-environment"


def test_the_kit_and_the_app_agree_on_the_strategies():
    """Two tables by design (the app never imports the kit): they must name the same strategies and carriers."""
    from sample_app.stores import STRATEGIES as APP_STRATEGIES
    assert list(APP_STRATEGIES) == list(STRATEGIES)
    for name, strategy in STRATEGIES.items():
        assert (APP_STRATEGIES[name].carrier == "bearer") == strategy.bearer
