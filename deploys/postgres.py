"""PostgreSQL for the database strategy: listens on the private address, accepts only the app nodes' addresses, over
TLS, with a SCRAM password; the app's role owns the sessions table and nothing else (it cannot create tables,
and the database belongs to postgres), and no other role may connect to the sessions database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.facts.files import File
from pyinfra.facts.postgres import make_psql_command
from pyinfra.operations import files, postgres, server, systemd
from pyinfra.operations.util import any_changed

from session_kit.defaults import POSTGRES_DEFAULTS

from .cluster import Cluster, bounded_deploy, install_packages, private_ip, render

# Where the templates are (templates/etc/postgresql/VERSION/main/): the same for every PostgreSQL version.
ETC = "/etc/postgresql/VERSION/main"
# systemd starts a crashed cluster again (postgresql@VERSION-NAME, every cluster of the host) after this long.
RESTART = "/etc/systemd/system/postgresql@.service.d/session-kit.conf"
RESTART_SECONDS = 1


@bounded_deploy("PostgreSQL session store", data_defaults=POSTGRES_DEFAULTS)
def install_postgres(cluster: Cluster) -> None:
    values = cluster.values(POSTGRES_DEFAULTS)
    version = cluster.platform.postgres  # the host's (session_kit/platforms.py)
    etc = f"/etc/postgresql/{version}/main"
    install_packages("Install postgresql", [f"postgresql-{version}"])
    restart = render(
        RESTART,
        name="systemd starts a crashed PostgreSQL again",
        mode="644",
        create_remote_dir=True,
        restart_seconds=RESTART_SECONDS,
    )
    systemd.daemon_reload(name="Reload systemd units (postgresql)", _if=restart.did_change)
    ssl_cert, ssl_key = f"{etc}/session-kit-server.crt", f"{etc}/session-kit-server.key"
    made = host.get_fact(File, path=ssl_key) is None and server.shell(
        name="TLS certificate for PostgreSQL (self-signed, made once)",
        commands=[
            f"openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN={host.name} "
            f"-keyout {ssl_key} -out {ssl_cert} 2>/dev/null",
            f"chown postgres:postgres {ssl_key} {ssl_cert}",
            f"chmod 600 {ssl_key}",
        ],
    )

    def render_conf(path: str, **arguments):
        """{etc}/path, postgres' own, from its template (templates/etc/postgresql/VERSION/main/path)."""
        return render(f"{etc}/{path}", src=f"{ETC}/{path}", owner="postgres:postgres", **arguments)

    conf = render_conf(
        "conf.d/session-kit.conf",
        name="Render conf.d/session-kit.conf",
        mode="644",
        private_ip=private_ip(host),
        ssl_cert=ssl_cert,
        ssl_key=ssl_key,
        **values,
    )
    changed = any_changed(conf, made) if made else conf.did_change
    hba = render_conf("pg_hba.conf", name="Render pg_hba.conf", mode="640", app_nodes=cluster.nodes("app"), **values)
    # listen_addresses and the TLS pair need a restart; pg_hba.conf only a reload.
    service = "postgresql"  # restarts and reloads reach every cluster (postgresql@VERSION-main)
    systemd.service(name="Restart postgresql", service=service, restarted=True, _if=changed)
    systemd.service(
        name="Reload postgresql", service=service, reloaded=True, _if=lambda: hba.did_change() and not changed()
    )
    systemd.service(name="Keep postgresql running and enabled", service=service, running=True, enabled=True)
    # Earlier versions recorded a digest of the password here, before knowing ALTER ROLE had worked.
    files.file(
        name="Remove the old password digest", path="/var/lib/postgresql/.session-kit-role-digest", present=False
    )
    app_role(values["postgres_user"], cluster.secrets["postgres_password"], _su_user="postgres")
    postgres.database(
        name="Sessions database", database=values["postgres_database"], owner="postgres", _su_user="postgres"
    )
    session_table(values["postgres_user"], values["postgres_database"], _su_user="postgres")


class SessionTable(FactBase):
    """Who owns the sessions table, and who may connect to its database and create in its schema, as one line:
    "OWNER PUBLIC_MAY_CONNECT ROLE_MAY_CONNECT ROLE_MAY_CREATE" (OWNER "-" when there is no table); None when
    PostgreSQL cannot be asked yet."""

    def requires_command(self, *args, **kwargs) -> str:
        return "psql"

    def command(self, role: str, database: str, **psql) -> StringCommand:
        # role and database are checked simple names (session_kit/validate.py: Name).
        query = (
            f"SELECT coalesce((SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = "
            f"'sessions'), '-') || ' ' || coalesce(aclcontains(datacl, makeaclitem(0, datdba, 'CONNECT', false)), "
            f"true) || ' ' || has_database_privilege('{role}', '{database}', 'CONNECT') || ' ' || "
            f"has_schema_privilege('{role}', 'public', 'CREATE') FROM pg_database WHERE datname = '{database}'"
        )
        return StringCommand(
            make_psql_command(database=database), "-XAtc", QuoteString(query), "2>/dev/null", "||", "true"
        )

    def process(self, output: list[str]) -> str | None:
        return next((line.strip() for line in output if line.strip()), None)


def session_table(role: str, database: str, **psql) -> None:
    """The sessions table, created here from the app's own schema (sample_app/stores/postgres.py: SCHEMA) and given
    to the app's role; CONNECT for that role only; CREATE in the public schema for nobody but postgres. Done when
    the state read from PostgreSQL differs from that, so a second apply changes nothing."""
    from sample_app.stores.postgres import SCHEMA

    wanted = f"{role} false true false"
    if host.get_fact(SessionTable, role=role, database=database, **psql) == wanted:
        return
    postgres.sql(
        name="Sessions table owned by the app's role, the database closed to others",
        sql=f"{SCHEMA.strip()}\nALTER TABLE sessions OWNER TO {role};\n"
        f"REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC;\n"
        f"GRANT CONNECT ON DATABASE {database} TO {role};\n"
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;\n"
        f"REVOKE CREATE ON SCHEMA public FROM {role};",
        psql_database=database,
        **psql,
    )


class RoleVerifier(FactBase):
    """The role's password as PostgreSQL keeps it (pg_authid.rolpassword: a SCRAM-SHA-256 verifier); None when the
    role has none, does not exist, or PostgreSQL cannot be asked (not installed yet, not running)."""

    def requires_command(self, *args, **kwargs) -> str:
        return "psql"

    def command(
        self, role: str, psql_user=None, psql_password=None, psql_host=None, psql_port=None, psql_database=None
    ) -> StringCommand:
        # role is a checked simple name (session_kit/validate.py: Name), so it needs no quoting inside the SQL.
        query = f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"
        return StringCommand(
            make_psql_command(
                user=psql_user, password=psql_password, host=psql_host, port=psql_port, database=psql_database
            ),
            "-XAtc",
            QuoteString(query),
            "2>/dev/null",
            "||",
            "true",
        )

    def process(self, output: list[str]) -> str | None:
        return next((line.strip() for line in output if line.strip()), None)


def _saslprep(password: str) -> str:
    """What PostgreSQL hashes (RFC 4013 SASLprep, as far as it can change a password): ASCII is kept; otherwise
    non-ASCII spaces become spaces, the characters mapped to nothing are dropped, and NFKC normalises the rest."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if unicodedata.category(c) == "Zs" else c
        for c in password
        if c not in "\u00ad\u034f\u1806\u180b\u180c\u180d\u200b\u200c\u200d\u2060\ufeff"
        and not "\ufe00" <= c <= "\ufe0f"
    )
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
    postgres.role(
        name="App role and its password",
        role=role,
        login=True,
        password=None if applied else password.replace("'", "''"),
        **psql,
    )
