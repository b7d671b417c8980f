"""The environment contract: a missing or invalid setting stops the app with one line naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.servers import ROOT
from sample_app.settings import SETTINGS, STRATEGIES, SettingError, Settings, describe

GOOD = {"SESSION_STRATEGY": "redis", "REDIS_URL": "redis://:pw@10.0.0.5:6379/0"}
KEY = "k" * 32


def test_defaults_fill_in_everything_else():
    settings = Settings.from_env(GOOD)
    assert settings.app_port == 8000 and settings.session_ttl == 1800 and settings.peers == ()
    assert settings.node_name  # the host name


@pytest.mark.parametrize(
    "env, named",
    [
        ({}, "SESSION_STRATEGY"),
        ({"SESSION_STRATEGY": "memcached"}, "SESSION_STRATEGY"),
        ({"SESSION_STRATEGY": "cookie"}, "SECRET_KEYS"),
        ({"SESSION_STRATEGY": "cookie", "SECRET_KEYS": "short"}, "SECRET_KEYS"),
        ({"SESSION_STRATEGY": "redis"}, "REDIS_URL"),
        ({"SESSION_STRATEGY": "token", "REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"SESSION_STRATEGY": "database"}, "DATABASE_URL"),
        ({"SESSION_STRATEGY": "database", "DATABASE_URL": "mysql://a@b/c"}, "DATABASE_URL"),
        ({"SESSION_STRATEGY": "replication"}, "REPLICATION_KEY"),
        ({"SESSION_STRATEGY": "replication", "REPLICATION_KEY": "k", "PEERS": "10.0.0.2:8000"}, "PEERS"),
        ({**GOOD, "APP_PORT": "http"}, "APP_PORT"),
        ({**GOOD, "APP_PORT": "70000"}, "APP_PORT"),
        ({**GOOD, "SESSION_TTL": "0"}, "SESSION_TTL"),
        ({**GOOD, "COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
        ({**GOOD, "REDIS_SENTINELS": "host-without-port"}, "REDIS_SENTINELS"),
        ({**GOOD, "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_bad_settings_name_themselves(env, named):
    with pytest.raises(SettingError) as error:
        Settings.from_env(env)
    assert str(error.value).startswith(named + ":")


def test_password_never_echoed():
    with pytest.raises(SettingError) as error:
        Settings.from_env({"SESSION_STRATEGY": "token", "REDIS_URL": "http://:hunter2@x"})
    assert "hunter2" not in str(error.value)


def test_each_strategy_needs_only_its_own_settings():
    needs = {
        "cookie": {"SECRET_KEYS": KEY},
        "sticky": {},
        "database": {"DATABASE_URL": "postgresql://u:p@h/db"},
        "replication": {"REPLICATION_KEY": "r"},
        "redis": {"REDIS_URL": "redis://h:6379"},
        "token": {"REDIS_URL": "redis://h:6379"},
    }
    assert set(needs) == set(STRATEGIES)
    for strategy, env in needs.items():
        assert Settings.from_env({"SESSION_STRATEGY": strategy, **env}).session_strategy == strategy


def test_help_lists_every_setting():
    text = describe()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text


def test_app_exits_with_one_line_naming_the_setting():
    result = subprocess.run(
        [sys.executable, "-m", "sample_app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"SESSION_STRATEGY": "cookie", "SECRET_KEYS": "too-short", "PATH": "/usr/bin"},
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SECRET_KEYS" in lines[0]


def test_the_docs_list_the_settings_as_the_app_does():
    page = (ROOT / "docs" / "sample-app.md").read_text()
    assert describe() in page, "docs/sample-app.md's settings table differs from `python -m sample_app --help`"
