"""PostgreSQL for the database strategy: listens on the private address, accepts only the app nodes' addresses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.facts.postgres import make_psql_command
from pyinfra.operations import files, postgres, systemd

from session_kit.defaults import POSTGRES_DEFAULTS

from .cluster import Cluster, bounded_deploy, install_packages, private_ip, template


@bounded_deploy("PostgreSQL session store", data_defaults=POSTGRES_DEFAULTS)
def install_postgres(cluster: Cluster) -> None:
    values = cluster.values(POSTGRES_DEFAULTS)
    version = values["postgres_version"]
    etc = f"/etc/postgresql/{version}/main"
    install_packages("Install postgresql", [f"postgresql-{version}"])
    conf = files.template(
        name="Render conf.d/session-kit.conf", src=template(f"{etc}/conf.d/session-kit.conf"),
        dest=f"{etc}/conf.d/session-kit.conf", user="postgres", group="postgres", mode="644",
        private_ip=private_ip(host), **values)
    hba = files.template(
        name="Render pg_hba.conf", src=template(f"{etc}/pg_hba.conf"), dest=f"{etc}/pg_hba.conf",
        user="postgres", group="postgres", mode="640", app_nodes=cluster.nodes("app"), **values)
    # listen_addresses needs a restart; pg_hba.conf only a reload.
    service = "postgresql"  # restarts and reloads reach every cluster (postgresql@VERSION-main)
    systemd.service(name="Restart postgresql", service=service, restarted=True, _if=conf.did_change)
    systemd.service(name="Reload postgresql", service=service, reloaded=True,
                    _if=lambda: hba.did_change() and not conf.did_change())
    systemd.service(name="Keep postgresql running and enabled", service=service, running=True, enabled=True)
    # Earlier versions recorded a digest of the password here, before knowing ALTER ROLE had worked.
    files.file(name="Remove the old password digest", path="/var/lib/postgresql/.session-kit-role-digest",
               present=False)
    app_role(values["postgres_user"], cluster.secrets["postgres_password"], _su_user="postgres")
    postgres.database(name="Sessions database", database=values["postgres_database"], owner=values["postgres_user"],
                      _su_user="postgres")


class RoleVerifier(FactBase):
    """The role's password as PostgreSQL keeps it (pg_authid.rolpassword: a SCRAM-SHA-256 verifier); None when the
    role has none, does not exist, or PostgreSQL cannot be asked (not installed yet, not running)."""

    def requires_command(self, *args, **kwargs) -> str:
        return "psql"

    def command(self, role: str, psql_user=None, psql_password=None, psql_host=None, psql_port=None,
                psql_database=None) -> StringCommand:
        # role is a checked simple name (session_kit/validate.py: Name), so it needs no quoting inside the SQL.
        query = f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"
        return StringCommand(
            make_psql_command(user=psql_user, password=psql_password, host=psql_host, port=psql_port,
                              database=psql_database), "-XAtc", QuoteString(query), "2>/dev/null", "||", "true")

    def process(self, output: list[str]) -> str | None:
        return next((line.strip() for line in output if line.strip()), None)


def _saslprep(password: str) -> str:
    """What PostgreSQL hashes (RFC 4013 SASLprep, as far as it can change a password): ASCII is kept; otherwise
    non-ASCII spaces become spaces, the characters mapped to nothing are dropped, and NFKC normalises the rest."""
    if password.isascii():
        return password
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in password
                     if c not in "\u00ad\u034f\u1806\u180b\u180c\u180d\u200b\u200c\u200d\u2060\ufeff"
                     and not "\ufe00" <= c <= "\ufe0f")
    return unicodedata.normalize("NFKC", mapped)


def scram_matches(password: str, verifier: str | None) -> bool:
    """Whether a SCRAM-SHA-256 verifier (SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY) was made from password:
    StoredKey = SHA-256(HMAC(PBKDF2-SHA-256(password, salt, iterations), "Client Key")) (RFC 5802, 7677)."""
    try:
        method, params, keys = (verifier or "").split("$")
        iterations, salt = params.split(":")
        stored_key = base64.b64decode(keys.split(":")[0], validate=True)
        salt_bytes = base64.b64decode(salt, validate=True)
        rounds = int(iterations)
    except ValueError:
        return False  # no verifier, an md5 one, or something else: set the password
    if method != "SCRAM-SHA-256" or not 1 <= rounds <= 10_000_000:
        return False
    for candidate in dict.fromkeys((_saslprep(password), password)):
        salted = hashlib.pbkdf2_hmac("sha256", candidate.encode(), salt_bytes, rounds)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        if hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            return True
    return False


def app_role(role: str, password: str, **psql) -> None:
    """The app's login role with this password. PostgreSQL itself says whether the password is applied: its
    verifier is read and checked here, on the controller, so the password is set exactly when the role lacks it
    (first apply, a changed secret, a recreated cluster) and nothing is recorded before ALTER ROLE succeeded.
    psql: pyinfra's psql_* arguments or global arguments such as _su_user."""
    applied = scram_matches(password, host.get_fact(RoleVerifier, role=role, **psql))
    # pyinfra writes the password inside '...' as it is: double its quotes for SQL (standard_conforming_strings is on
    # by default, so backslashes are plain characters); the shell quoting around the whole statement is pyinfra's.
    postgres.role(name="App role and its password", role=role, login=True,
                  password=None if applied else password.replace("'", "''"), **psql)
