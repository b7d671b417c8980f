"""The PostgreSQL password is applied exactly when PostgreSQL lacks it: deploys/postgres.py reads the role's SCRAM
verifier and checks the password against it on the controller. Against a real PostgreSQL on loopback
(harness/servers.py), through a real pyinfra run of the deploy's own function (@local: psql on this machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from deploys.postgres import scram_matches
from harness.servers import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
HOSTILE = "p@ss:w/o%rd#?&[]\"' \\$`${HOME}%40;*"
ROLE = "kit_app"

pytestmark = pytest.mark.skipif(
    not shutil.which("psql") or not Path("/usr/lib/postgresql/15/bin/initdb").exists(),
    reason="PostgreSQL 15 is not installed (./kit setup installs it)",
)


@pytest.fixture(scope="module")
def server():
    server = PostgresServer().start()
    yield server
    server.destroy()


def admin(server: PostgresServer) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        dbname="postgres",
        autocommit=True,
    )


def verifier(server: PostgresServer, role: str) -> str | None:
    with admin(server) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return row[0] if row else None


def logs_in(server: PostgresServer, role: str, password: str) -> bool:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=server.port, user=role, password=password, dbname="postgres", connect_timeout=5
        ):
            return True
    except psycopg.OperationalError:
        return False


@pytest.mark.parametrize("password", [HOSTILE, "plain", "pässwörd", "non\u00a0breaking", "x" * 200])
def test_scram_matches_what_postgresql_computed(server, password):
    with admin(server) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS probe"))
        conn.execute(sql.SQL("CREATE ROLE probe LOGIN PASSWORD {}").format(sql.Literal(password)))
    stored = verifier(server, "probe")
    assert stored.startswith("SCRAM-SHA-256$")
    assert scram_matches(password, stored)
    assert not scram_matches(password + "x", stored)
    assert not scram_matches(password[:-1], stored)


@pytest.mark.parametrize(
    "stored", [None, "", "md5" + "0" * 32, "SCRAM-SHA-256$x:y$z:w", "SCRAM-SHA-1$4096:c2FsdA==$a:b"]
)
def test_no_or_foreign_verifier_means_set_it(stored):
    assert not scram_matches("anything", stored)


def apply(server: PostgresServer, password: str) -> dict:
    """One `pyinfra -y @local` run of deploys.postgres.app_role against the loopback server; its JSON results."""
    deploy = Path(os.environ.get("TMPDIR", "/tmp")) / f"kit-app-role-{os.getpid()}.py"
    deploy.write_text(
        "import os\nfrom deploys.postgres import app_role\n"
        "app_role(os.environ['KIT_ROLE'], os.environ['KIT_PASSWORD'], psql_user=os.environ['KIT_ADMIN'],\n"
        "         psql_password=os.environ['KIT_ADMIN_PASSWORD'], psql_host='127.0.0.1',\n"
        "         psql_port=int(os.environ['KIT_PORT']), psql_database='postgres')\n"
    )
    env = {
        **os.environ,
        "KIT_ROLE": ROLE,
        "KIT_PASSWORD": password,
        "KIT_ADMIN": server.user,
        "KIT_ADMIN_PASSWORD": server.password,
        "KIT_PORT": str(server.port),
        "PYTHONPATH": str(ROOT),
    }
    try:
        result = subprocess.run(
            [PYINFRA, "-y", "--json", "@local", str(deploy)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        deploy.unlink()
    out = result.stdout
    report = json.loads(out[out.index("{") :]) if "{" in out else {}
    report["returncode"] = result.returncode
    report["text"] = result.stdout + result.stderr
    return report


def changed(report: dict) -> int:
    """How many operations changed something on the host (pyinfra's JSON results: `success` lists the hosts an
    operation changed, `no_change` those it left as they were)."""
    assert report["returncode"] == 0, report["text"][-2000:]
    return sum(1 for op in report["results"]["operations"] if op["success"])


def test_the_deploy_sets_the_password_only_when_postgresql_lacks_it(server):
    with admin(server) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
    first = apply(server, HOSTILE)
    assert changed(first) == 1 and logs_in(server, ROLE, HOSTILE), first["text"][-2000:]
    # the app's DATABASE_URL (percent-encoded password) logs in as that role
    from session_kit.defaults import ALL_DEFAULTS
    from session_kit.strategies import STRATEGIES, app_environment

    data = {**ALL_DEFAULTS, "postgres_user": ROLE, "postgres_port": server.port, "postgres_database": "postgres"}
    env = app_environment(
        STRATEGIES["database"],
        data,
        {"postgres_password": HOSTILE},
        node="n",
        private_ip="127.0.0.1",
        peers=[],
        redis_ip=None,
        db_ip="127.0.0.1",
    )
    with psycopg.connect(env["DATABASE_URL"], connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == ROLE
    stored = verifier(server, ROLE)

    second = apply(server, HOSTILE)  # nothing to do: the verifier matches
    assert changed(second) == 0, second["text"][-2000:]
    assert verifier(server, ROLE) == stored  # not re-hashed (a new salt would show)

    # A recreated cluster: the role has no password (or no role at all): the next apply sets it again.
    with admin(server) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(ROLE)))
    assert not logs_in(server, ROLE, HOSTILE)
    assert changed(apply(server, HOSTILE)) == 1 and logs_in(server, ROLE, HOSTILE)
    with admin(server) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))
    assert changed(apply(server, HOSTILE)) == 1 and logs_in(server, ROLE, HOSTILE)


def test_a_failed_alter_role_is_retried_by_the_next_apply(server):
    """Nothing is recorded before ALTER ROLE succeeded: a run that could not set a new password leaves the role as
    it was, and the next run sets it (the old digest file was written first and then never retried)."""
    assert changed(apply(server, HOSTILE)) in (0, 1) and logs_in(server, ROLE, HOSTILE)
    server.stop()
    try:
        failed = apply(server, "the-new-password")
        assert failed["returncode"] != 0
    finally:
        server.start()
    assert logs_in(server, ROLE, HOSTILE) and not logs_in(server, ROLE, "the-new-password")
    assert changed(apply(server, "the-new-password")) == 1
    assert logs_in(server, ROLE, "the-new-password") and not logs_in(server, ROLE, HOSTILE)
