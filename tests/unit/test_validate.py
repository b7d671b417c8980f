"""Inventory checks: one line naming what is wrong, before any host is touched."""

from __future__ import annotations

import pytest

from session_kit.defaults import ALL_DEFAULTS
from session_kit.strategies import STRATEGIES, lb_method
from session_kit.validate import KitError, check_data, check_groups, check_same, known_variables
from tests.unit.app_env import node_environment, read_env_file

GOOD = {**ALL_DEFAULTS, "inventory_name": "test"}
GROUPS = {"lb": ["l"], "app": ["a1", "a2"], "redis": ["r"], "db": ["d"]}


def test_defaults_pass():
    check_data(GOOD)
    check_groups("redis", GROUPS)


@pytest.mark.parametrize(
    "change, named",
    [
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
        # a misspelt variable without the kit's prefix must not be silently ignored
        ({"session_stratgy": "token"}, "session_stratgy"),
        ({"ssh_hostnam": "10.0.0.1"}, "ssh_hostnam"),
        # every variable is type-checked, not only the integers
        ({"app_cookie_secure": "false"}, "app_cookie_secure"),
        ({"app_cookie_secure": 0}, "app_cookie_secure"),
        ({"redis_maxmemory": "256 megabytes"}, "redis_maxmemory"),
        ({"redis_maxmemory": -1}, "redis_maxmemory"),
        ({"redis_maxmemory_policy": "lru"}, "redis_maxmemory_policy"),
        ({"redis_save": "300"}, "redis_save"),
        ({"redis_save": "0 10"}, "redis_save"),
        ({"redis_save": '300 10"\nrequirepass x'}, "redis_save"),
        ({"nginx_fail_timeout": "500ms"}, "nginx_fail_timeout"),  # fail_timeout takes whole seconds
        ({"nginx_fail_timeout": "5 s"}, "nginx_fail_timeout"),
        ({"nginx_read_timeout": "30s1m"}, "nginx_read_timeout"),  # Nginx wants the largest unit first
        ({"nginx_read_timeout": "0s"}, "nginx_read_timeout"),
        ({"nginx_connect_timeout": "2m"}, "nginx_connect_timeout"),  # Nginx caps it at 75s
        ({"nginx_listen": "0.0.0.0"}, "nginx_listen"),
        ({"nginx_listen": "localhost:80"}, "nginx_listen"),
        ({"nginx_listen": "0.0.0.0:70000"}, "nginx_listen"),
        ({"private_ip": "app1.example.internal"}, "private_ip"),
        ({"private_ip": "fd00::5"}, "private_ip"),
        ({"private_ip": None, "ssh_hostname": "app1.example.internal"}, "private_ip"),
        ({"app_log_level": "verbose"}, "app_log_level"),
        ({"app_dir": "opt/kit"}, "app_dir"),
        ({"app_dir": "/opt/my kit"}, "app_dir"),
        ({"app_dir": "/opt/%kit"}, "app_dir"),
        ({"secrets_dir": None}, "secrets_dir"),
        ({"lb_method": 1}, "lb_method"),
        ({"replication_mode": "eventual"}, "replication_mode"),
        ({"app_rolling_batch": 0}, "app_rolling_batch"),
        ({"app_rolling_batch": "2"}, "app_rolling_batch"),
        ({"app_workers": 0}, "app_workers"),
        ({"app_workers": 65}, "app_workers"),
        ({"app_workers": "2"}, "app_workers"),
        ({"app_workers": True}, "app_workers"),
        ({"app_workers": "cores"}, "app_workers"),
    ],
)
def test_bad_values_name_themselves(change, named):
    with pytest.raises(KitError) as error:
        check_data({**GOOD, **change})
    assert str(error.value).startswith(named + ":") and "\n" not in str(error.value)


def test_typo_gets_a_suggestion():
    with pytest.raises(KitError, match="did you mean redis_port"):
        check_data({**GOOD, "redis_prot": 1})
    with pytest.raises(KitError, match="^session_stratgy: unknown variable; did you mean session_strategy\\?$"):
        check_data({**GOOD, "session_stratgy": "token"})


@pytest.mark.parametrize(
    "change",
    [
        {
            "ssh_user": "deploy",
            "ssh_key": "~/.ssh/id",
            "ssh_port": 22,
            "ssh_strict_host_key_checking": "yes",
            "ssh_connect_retries": 2,
            "ssh_known_hosts_file": "~/.ssh/known_hosts",
        },
        {"_sudo": True, "_sudo_user": "root", "_su_user": "postgres", "_timeout": 60, "_retries": 1, "_env": {}},
        {"app_cookie_secure": True, "redis_maxmemory": 0, "redis_save": ""},
        {"redis_maxmemory": "1GB"},
        {"nginx_fail_timeout": "1m30s", "nginx_read_timeout": "500ms", "nginx_connect_timeout": 3},
        {"nginx_listen": 8080, "private_ip": "10.0.0.5"},
        {"nginx_listen": "[::]:80"},
        {"nginx_listen": "10.0.0.5:8080"},
        {"replication_mode": "async", "app_rolling_batch": 2},
        {"private_ip": None, "ssh_hostname": "10.0.0.5"},
        {"lb_method": "hash_cookie", "secrets_dir": "/var/lib/kit"},
    ],
)
def test_pyinfra_settings_and_good_values_pass(change):
    check_data({**GOOD, **change})


def test_pyinfra_keys_come_from_pyinfra():
    """The allowed list is read from pyinfra's own connectors and global arguments, not typed out here."""
    from pyinfra.api.arguments import all_global_arguments
    from pyinfra.connectors.ssh import SSHConnector

    known = known_variables()
    assert set(SSHConnector.data_meta) <= known
    assert {name for name, _ in all_global_arguments() if name.startswith("_")} <= known
    assert "name" not in known and "ssh_hostnam" not in known
    check_data({**GOOD, "chroot_directory": "/srv/root"})  # set by pyinfra's chroot connector, which declares no keys


@pytest.mark.parametrize("strategy", ["sticky", "replication"])
def test_one_worker_for_the_strategies_that_keep_sessions_in_memory(strategy):
    with pytest.raises(KitError) as error:
        check_data({**GOOD, "session_strategy": strategy, "app_workers": 2}, "app1")
    assert str(error.value) == (
        f"app_workers: session_strategy={strategy} keeps its sessions in one process's "
        f"memory, where another worker of the node would not see them: 1 or auto (which is 1 "
        f"for it), got 2 (host app1)"
    )
    check_data({**GOOD, "session_strategy": strategy, "app_workers": 1})
    check_data({**GOOD, "session_strategy": strategy, "app_workers": "auto"})


@pytest.mark.parametrize("strategy", ["redis", "token", "database", "cookie"])
def test_several_workers_for_the_shared_strategies(strategy):
    check_data({**GOOD, "session_strategy": strategy, "app_workers": 2})
    check_data({**GOOD, "session_strategy": strategy, "app_workers": 64})


@pytest.mark.parametrize(
    "value, strategy, cores, workers",
    [
        ("auto", "redis", 2, 2),
        ("auto", "database", 16, 16),
        ("auto", "redis", 200, 64),
        ("auto", "redis", None, 1),
        ("auto", "sticky", 8, 1),
        ("auto", "replication", 8, 1),
        (3, "token", 2, 3),
        (1, "redis", 8, 1),
    ],
)
def test_app_workers_resolves_auto_to_the_cores(value, strategy, cores, workers):
    from session_kit.defaults import app_workers

    assert app_workers(value, strategy, cores) == workers


@pytest.mark.parametrize(
    "strategy, cores, workers", [("redis", 2, 2), ("database", 4, 4), ("sticky", 4, 1), ("replication", 4, 1)]
)
def test_env_file_carries_workers_the_app_accepts(strategy, cores, workers):
    """The env file as the deploy writes it (its environment, WORKERS resolved for the strategy) holds WORKERS,
    and the app reads it back."""
    from pyinfra.api.util import get_template

    from deploys.cluster import template
    from sample_app.settings import Settings
    from session_kit.defaults import app_workers

    secrets = {"cookie_secret_key": "k" * 43, "redis_password": "p", "postgres_password": "q", "replication_key": "r"}
    env = node_environment(strategy, GOOD, secrets)
    env["WORKERS"] = str(app_workers("auto", strategy, cores))
    text = get_template(template("etc/session-kit/app.env")).render(env=env)
    assert f"\nWORKERS={workers}\n" in text
    assert Settings.from_env(read_env_file(text)).workers == workers


def test_new_variables_have_defaults():
    assert ALL_DEFAULTS["replication_mode"] == "sync" and ALL_DEFAULTS["app_rolling_batch"] == 1
    assert ALL_DEFAULTS["app_workers"] == "auto"


@pytest.mark.parametrize(
    "name, a, b",
    [
        ("app_port", 8000, 8001),
        ("redis_port", 6379, 6380),
        ("session_strategy", "redis", "token"),
        ("lb_method", None, "ip_hash"),
        ("replication_mode", "sync", "async"),
        ("postgres_user", "a", "b"),
        ("inventory_name", "one", "two"),
        ("app_cookie_secure", False, True),
        ("app_session_ttl", 60, 61),
    ],
)
def test_values_that_must_agree_across_hosts(name, a, b):
    hosts = {"lb1": {**GOOD, name: a}, "app1": {**GOOD, name: a}, "app2": {**GOOD, name: b}}
    with pytest.raises(KitError) as error:
        check_same(hosts)
    assert str(error.value) == f"{name}: must be the same on every host, but lb1 has {a!r} and app2 has {b!r}"


def test_per_host_values_may_differ():
    check_same(
        {
            "app1": {**GOOD, "private_ip": "10.0.0.1", "app_log_level": "debug", "nginx_keepalive": 8},
            "app2": {**GOOD, "private_ip": "10.0.0.2"},
        }
    )


@pytest.mark.parametrize("strategy, missing", [("database", "db"), ("redis", "redis"), ("token", "redis")])
def test_strategy_needs_its_group(strategy, missing):
    with pytest.raises(KitError, match=f"^{missing}: group is empty, but session_strategy={strategy} needs it$"):
        check_groups(strategy, {**GROUPS, missing: []})


def test_two_app_nodes_and_one_balancer_or_several_on_a_floating_address():
    with pytest.raises(KitError, match="^app: needs two or more"):
        check_groups("cookie", {**GROUPS, "app": ["a1"]})
    with pytest.raises(KitError, match="^lb: 2 hosts need lb_vip, the floating address"):
        check_groups("cookie", {**GROUPS, "lb": ["l1", "l2"]})
    with pytest.raises(KitError, match="^lb: group is empty"):
        check_groups("cookie", {**GROUPS, "lb": []})
    check_groups("cookie", {**GROUPS, "lb": ["l1", "l2"]}, lb_vip="10.0.0.10")
    with pytest.raises(KitError, match="^lb_vip: needs two or more lb hosts"):
        check_groups("cookie", {**GROUPS, "lb": ["l1"]}, lb_vip="10.0.0.10")


def test_default_balancing_per_strategy():
    assert {s: lb_method({"session_strategy": s}) for s in STRATEGIES} == {
        "cookie": "round_robin",
        "sticky": "ip_hash",
        "database": "round_robin",
        "replication": "round_robin",
        "redis": "round_robin",
        "token": "round_robin",
    }
    assert lb_method({"session_strategy": "replication", "lb_method": "hash_cookie"}) == "hash_cookie"


def test_app_environment_is_valid_for_the_app():
    """What the deploy writes into app.env is accepted by the app's own settings check, for every strategy."""
    from sample_app.settings import Settings

    secrets = {"cookie_secret_key": "k" * 43, "redis_password": "p", "postgres_password": "q", "replication_key": "r"}
    for strategy in STRATEGIES:
        assert Settings.from_env(node_environment(strategy, GOOD, secrets)).session_strategy == strategy


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


INVENTORY = """
_ssh = {{"ssh_user": "deploy", "_sudo": True, "inventory_name": "unit"}}
lb = [("lb1", {{**_ssh, "private_ip": "10.0.0.10"}})]
app = [("app1", {{**_ssh, "private_ip": "10.0.0.11"}}), ("app2", {{**_ssh, "private_ip": "10.0.0.12"{app2}}})]
redis = [("cache1", {{**_ssh, "private_ip": "10.0.0.20"}})]
"""


def write_inventory(tmp_path, app2: str = "", group_data: str = "") -> str:
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(group_data)
    path = tmp_path / "unit.py"
    path.write_text(INVENTORY.format(app2=app2))
    return str(path)


def test_inventory_as_pyinfra_reads_it(tmp_path):
    """Through pyinfra's own reading of the inventory and of --data (what `./kit deploy` checks first)."""
    from session_kit.inventory import load

    path = write_inventory(tmp_path, group_data='session_strategy = "token"\n')
    assert load(path).strategy.name == "token"
    # --data values are parsed by pyinfra: false arrives as False and passes ...
    assert load(path, {"app_cookie_secure": "false"}).vars["app_cookie_secure"] is False
    # ... a misspelt one is refused instead of deploying the default strategy
    with pytest.raises(KitError, match="^session_stratgy: unknown variable .*did you mean session_strategy"):
        load(path, {"session_stratgy": "cookie"})


def test_inventory_refuses_a_string_boolean_in_group_data(tmp_path):
    from session_kit.inventory import load

    path = write_inventory(tmp_path, group_data='app_cookie_secure = "false"\n')
    with pytest.raises(KitError, match="^app_cookie_secure: must be True or False, got 'false'"):
        load(path)


def test_inventory_refuses_a_port_that_differs_between_hosts(tmp_path):
    from session_kit.inventory import load

    path = write_inventory(tmp_path, app2=', "app_port": 8001')
    with pytest.raises(KitError) as error:
        load(path)
    assert str(error.value) == "app_port: must be the same on every host, but lb1 has 8000 and app2 has 8001"


def test_inventory_refuses_several_workers_for_sticky(tmp_path):
    """Through pyinfra's reading of the inventory: refused before any host is touched."""
    from session_kit.inventory import load

    path = write_inventory(tmp_path, group_data='session_strategy = "sticky"\napp_workers = 2\n')
    with pytest.raises(
        KitError, match="^app_workers: session_strategy=sticky keeps its sessions in one process's memory"
    ):
        load(path)
    assert load(path, {"app_workers": "auto"}).vars["app_workers"] == "auto"
    assert load(path, {"session_strategy": "redis"}).vars["app_workers"] == 2


def test_sentinel_needs_a_replica_to_promote():
    with pytest.raises(
        KitError,
        match=r"^redis: redis_mode=sentinel needs two or more hosts \(a primary and a "
        r"replica to promote\), has 1$",
    ):
        check_groups("redis", GROUPS, "sentinel")
    check_groups("redis", {**GROUPS, "redis": ["r1", "r2"]}, "sentinel")
    check_groups("database", GROUPS, "sentinel")  # no Redis used: the mode does not matter


@pytest.mark.parametrize(
    "redis, app, expected",
    [
        (["r1", "r2"], ["a1", "a2"], ["r1", "r2", "a1"]),  # a third Sentinel on the first app node
        (["r1", "a1"], ["a1", "a2"], ["r1", "a1", "a2"]),  # a host in both groups counts once
        (["r1", "r2", "r3", "r4"], ["a1", "a2"], ["r1", "r2", "r3", "r4"]),  # every redis host runs one
    ],
)
def test_sentinels_on_every_redis_host_and_three_at_least(redis, app, expected):
    from session_kit.strategies import sentinel_hosts, sentinel_quorum

    assert sentinel_hosts(redis, app) == expected
    assert sentinel_quorum(3) == 2 and sentinel_quorum(4) == 3 and sentinel_quorum(5) == 3


def test_the_app_finds_the_primary_through_the_sentinels():
    keys = {"redis_password": "p", "redis_admin_password": "a", "redis_replication_password": "r"}
    data = {**GOOD, "redis_mode": "sentinel"}
    env = node_environment("token", data, keys, sentinels=["10.0.0.9", "10.0.0.10", "10.0.0.2"])
    assert env["REDIS_SENTINELS"] == "10.0.0.9:26379,10.0.0.10:26379,10.0.0.2:26379"
    assert env["REDIS_SENTINEL_MASTER"] == "sessions"
    assert "REDIS_SENTINELS" not in node_environment("token", GOOD, keys)


@pytest.mark.parametrize(
    "hosts, expected",
    [
        (["r1", "r2", "r3"], [("r1", 7000), ("r2", 7000), ("r3", 7000), ("r1", 7001), ("r2", 7001), ("r3", 7001)]),
        (["r1"], [("r1", 7000 + i) for i in range(6)]),  # one host: six instances on it
        (["r1", "r2", "r3", "r4", "r5", "r6", "r7"], [(f"r{i}", 7000) for i in range(1, 7)]),  # one each, r7 unused
    ],
)
def test_cluster_instances_spread_over_the_redis_hosts(hosts, expected):
    from session_kit.strategies import cluster_layout

    assert cluster_layout(hosts, 7000) == expected


def test_the_app_follows_the_cluster_from_every_instance():
    keys = {"redis_password": "p", "redis_admin_password": "a", "redis_replication_password": "r"}
    env = node_environment(
        "redis", {**GOOD, "redis_mode": "cluster"}, keys, cluster_nodes=[("10.0.0.9", 7000), ("10.0.0.10", 7000)]
    )
    assert env["REDIS_CLUSTER_NODES"] == "10.0.0.9:7000,10.0.0.10:7000" and "REDIS_SENTINELS" not in env


@pytest.mark.parametrize("inventory", ["inventories/example.py", "inventories/example_ha.py"])
def test_the_shipped_examples_pass_the_check(inventory):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "session_kit", "check", inventory], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and ": ok: " in result.stdout, result.stdout + result.stderr


def test_a_floating_address_that_is_a_hosts_own_is_refused():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "session_kit", "check", "inventories/example_ha.py", "--data", "lb_vip=10.0.1.11"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "lb_vip: 10.0.1.11 is a host's own address" in result.stderr
