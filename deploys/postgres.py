"""PostgreSQL for the database strategy: listens on the private address, accepts only the app nodes' addresses."""

from __future__ import annotations

import hashlib
import io

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, files, postgres, systemd

from session_kit.defaults import POSTGRES_DEFAULTS

from .cluster import Cluster, private_ip, template


@deploy("PostgreSQL session store", data_defaults=POSTGRES_DEFAULTS)
def install_postgres(cluster: Cluster) -> None:
    values = cluster.values(POSTGRES_DEFAULTS)
    version = values["postgres_version"]
    etc = f"/etc/postgresql/{version}/main"
    apt.packages(name="Install postgresql", packages=[f"postgresql-{version}"], update=True, cache_time=3600)
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
    # pyinfra cannot read a role's password back, so it would set it on every apply: a digest of the password on
    # the host tells when it really changed.
    password = cluster.secrets["postgres_password"]
    digest = files.put(name="Record the app role's password digest",
                       src=io.StringIO(hashlib.sha256(password.encode()).hexdigest() + "\n"),
                       dest="/var/lib/postgresql/.session-kit-role-digest", user="postgres", group="postgres",
                       mode="600")
    postgres.role(name="App role", role=values["postgres_user"], login=True, _su_user="postgres")
    postgres.role(name="App role password", role=values["postgres_user"], password=password, login=True,
                  _su_user="postgres", _if=digest.did_change)
    postgres.database(name="Sessions database", database=values["postgres_database"], owner=values["postgres_user"],
                      _su_user="postgres")
