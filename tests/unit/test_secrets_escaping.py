"""Secrets from the environment (SESSION_KIT_<NAME>) are written safely wherever they go: percent-encoded in the app's
URLs, as SHA-256 digests in redis.conf's ACL users, quoted in the app's systemd EnvironmentFile. The templates are
rendered by pyinfra's own template loader, as a deploy renders them; what they produce is read back by real parsers
(sh, redis-server, the app's settings and its Redis client)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pyinfra.api.util import get_template

from harness.servers import free_port, wait_until
from session_kit import secrets
from session_kit.defaults import ALL_DEFAULTS
from session_kit.strategies import STRATEGIES
from session_kit.validate import KitError
from tests.unit.app_env import node_environment, read_env_file

ROOT = Path(__file__).resolve().parents[2]
# Every character that means something in a URL, a shell, systemd's EnvironmentFile or redis.conf.
HOSTILE = "p@ss:w/o%rd#?&[]\"' \\$`${HOME}%40;*"
DATA = {**ALL_DEFAULTS, "inventory_name": "unit"}


def render(path: str, **values) -> str:
    return get_template(str(ROOT / "templates" / (path + ".j2"))).render(**values)


def environment(strategy: str, password: str = HOSTILE) -> dict[str, str]:
    keys = {
        "cookie_secret_key": password,
        "redis_password": password,
        "redis_admin_password": password + "!",
        "postgres_password": password,
        "replication_key": password,
    }
    return node_environment(strategy, DATA, keys)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_env_file_round_trips_every_value(strategy):
    env = environment(strategy)
    text = render("etc/session-kit/app.env", env=env)
    assert read_env_file(text) == env
    # plain values stay plain (what the verification suite and a reader look for)
    assert f"SESSION_STRATEGY={strategy}\n" in text


@pytest.mark.parametrize("strategy", ["redis", "token", "database"])
def test_the_app_reads_the_password_back_from_the_env_file(strategy):
    from psycopg.conninfo import conninfo_to_dict
    from redis.connection import parse_url

    from sample_app.settings import Settings

    settings = Settings.from_env(read_env_file(render("etc/session-kit/app.env", env=environment(strategy))))
    if strategy == "database":
        parts = conninfo_to_dict(settings.database_url)
        assert (parts["password"], parts["host"], parts["dbname"]) == (HOSTILE, "10.0.0.8", "sessions")
    else:
        parts = parse_url(settings.redis_url)
        assert (parts["password"], parts["host"], parts["port"]) == (HOSTILE, "10.0.0.9", 6379)


@pytest.mark.parametrize("sentinel", [False, True], ids=["standalone", "sentinel"])
def test_redis_conf_acl_users_round_trip_through_a_real_redis(tmp_path, sentinel):
    """redis-server reads the rendered redis.conf; the app's URL (its ACL user, the password percent-encoded)
    authenticates against it, and that user can do what the app does and nothing else; no one logs in without a
    user; admin can do everything. With Sentinel, the replication user (the password also written in clear, as
    masterauth) logs in and may replicate and fail over, not read sessions."""
    import redis

    from deploys.redis import acl

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (./kit setup installs it)")
    port = free_port()
    conf = tmp_path / "redis.conf"
    secrets = {
        "redis_password": HOSTILE,
        "redis_admin_password": HOSTILE + "!",
        "redis_replication_password": HOSTILE + "?",
    }
    conf.write_text(
        render(
            "etc/redis/redis.conf",
            private_ip="127.0.0.1",
            sentinel=sentinel,
            replication=sentinel,
            cluster=False,
            **acl(secrets),
            port=port,
            pidfile=tmp_path / "pid",
            dbfilename="dump.rdb",
            appenddirname="appendonlydir",
            **{k: v for k, v in ALL_DEFAULTS.items() if k.startswith("redis_")},
        )
    )
    # Only what a test process cannot use is overridden: systemd supervision and the Debian paths.
    proc = subprocess.Popen(
        [
            "redis-server",
            str(conf),
            "--supervised",
            "no",
            "--dir",
            str(tmp_path),
            "--pidfile",
            str(tmp_path / "pid"),
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = environment("redis")
        client = redis.Redis.from_url(env["REDIS_URL"].replace("10.0.0.9", "127.0.0.1").replace(":6379/", f":{port}/"))
        wait_until(lambda: proc.poll() is not None or _pings(client), 10, "redis-server with the rendered conf")
        assert proc.poll() is None, "redis-server refused the rendered redis.conf"
        assert client.ping() is True
        assert client.hset("session:x", "user", "u") == 1 and client.pexpire("session:x", 60000)
        for refused in (
            lambda: client.flushall(),
            lambda: client.config_get("*"),
            lambda: client.keys("*"),
            lambda: client.set("session:y", "v"),
            lambda: client.hset("other:x", "f", "v"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
        user = ALL_DEFAULTS["redis_user"]
        wrong = redis.Redis(host="127.0.0.1", port=port, username=user, password=HOSTILE[:-1])
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        with pytest.raises(redis.AuthenticationError):  # the default user is off, whatever the password
            redis.Redis(host="127.0.0.1", port=port, password=HOSTILE).ping()
        nobody = redis.Redis(host="127.0.0.1", port=port)
        with pytest.raises(redis.AuthenticationError):
            nobody.ping()
        admin = redis.Redis(host="127.0.0.1", port=port, username="admin", password=HOSTILE + "!")
        assert admin.dbsize() == 1 and admin.config_get("maxmemory-policy")
        if sentinel:
            assert admin.config_get("masterauth")["masterauth"] == HOSTILE + "?"
            replication = redis.Redis(host="127.0.0.1", port=port, username="replication", password=HOSTILE + "?")
            assert replication.ping() is True and replication.execute_command("ROLE")[0] == b"master"
            with pytest.raises(redis.exceptions.NoPermissionError):
                replication.hgetall("session:x")
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("value", ["line\nbreak", "tab\there", "nul\x00", "bell\x07"])
def test_control_characters_are_refused_with_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SESSION_KIT_REDIS_PASSWORD", value.replace("\x00", "\x01"))
    with pytest.raises(KitError) as error:
        secrets.load(tmp_path, "inv")
    assert str(error.value).startswith("SESSION_KIT_REDIS_PASSWORD: holds a control character")
    assert "\n" not in str(error.value) and value not in str(error.value)


def test_an_environment_override_with_every_printable_character_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("SESSION_KIT_POSTGRES_PASSWORD", HOSTILE)
    assert secrets.load(tmp_path, "inv")["postgres_password"] == HOSTILE
    assert os.environ["SESSION_KIT_POSTGRES_PASSWORD"] == HOSTILE


def test_sentinel_refuses_a_replication_password_it_could_not_read_back():
    from session_kit.secrets import check_usable
    from session_kit.validate import KitError

    secrets = {"redis_replication_password": HOSTILE}
    check_usable({"redis_mode": "standalone"}, secrets)  # in redis.conf (masterauth) it is quoted: fine
    with pytest.raises(KitError, match=r"^redis_replication_password: with redis_mode=sentinel, only letters"):
        check_usable({"redis_mode": "sentinel"}, secrets)
    check_usable({"redis_mode": "sentinel"}, {"redis_replication_password": "Ab0_-" * 8})  # token_urlsafe's kind
