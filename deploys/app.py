"""The sample app on each app node: a venv installed from the uploaded wheelhouse, its environment file and systemd
unit from templates. It restarts only when its code, settings or unit changed, one batch of nodes at a time
(deploys/rolling.py)."""

from __future__ import annotations

from gevent.lock import BoundedSemaphore
from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Command
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from session_kit.defaults import APP_DEFAULTS, app_workers
from session_kit.strategies import app_environment

from . import wheelhouse
from .cluster import Cluster, bounded, bounded_deploy, install_packages, private_ip, render
from .rolling import HEALTHY_WITHIN, NEEDS_RESTART, wait_healthy_command

UNIT = "/etc/systemd/system/session-kit-app.service"
ENV = "/etc/session-kit/app.env"
_built: dict[tuple[str, str], tuple] = {}
# pyinfra prepares hosts in gevent greenlets: the first host of a Python version builds, the others wait for it.
_building = BoundedSemaphore()


def built_wheelhouse(python: str, machine: str):
    """The wheelhouse for a host's Python (major.minor) and CPU, and its hash, built once per pyinfra run and pair."""
    with _building:
        if (python, machine) not in _built:
            path = wheelhouse.build(python, machine)
            _built[python, machine] = path, wheelhouse.combined_hash(path)
    return _built[python, machine]


@bounded_deploy("sample_app node", data_defaults=APP_DEFAULTS)
def install_app(cluster: Cluster) -> None:
    values = cluster.values(APP_DEFAULTS)
    app_dir, user = values["app_dir"], values["app_user"]
    python = cluster.platform.python
    if not cluster.platform.machine:
        raise PyinfraError(f"{host.name}: `uname -m` printed nothing: the host's CPU, which the app's wheels are for")
    local_wheels, wheels_hash = built_wheelhouse(python, cluster.platform.machine)
    was_running = bool(host.get_fact(SystemdStatus, services=["session-kit-app"]).get("session-kit-app.service"))
    running_strategy = (
        host.get_fact(Command, f"sed -n 's/^SESSION_STRATEGY=//p' {ENV} 2>/dev/null || true") or ""
    ).strip()
    install_packages("Install python3-venv and curl", ["python3-venv", "curl"])
    # A system user without a home: the code under app_dir stays root's, the app cannot change it. Made once (pyinfra's
    # own check reads every user of the host: 0.4 s of each apply).
    uid = host.get_fact(Command, f"id -u {user} 2>/dev/null || true")
    server.user(
        name="App user",
        user=user,
        system=True,
        home="/nonexistent",
        shell="/usr/sbin/nologin",
        create_home=False,
        _if=lambda: not (uid or "").strip(),
    )
    files.directory(name="App directory", path=app_dir, user="root", group="root", mode="755")
    files.put(
        name="Upload the wheelhouse",
        src=str(local_wheels / wheelhouse.ARCHIVE),
        dest=f"{app_dir}/{wheelhouse.ARCHIVE}",
        user="root",
        group="root",
        mode="644",
    )
    marker = f"{app_dir}/venv/.session-kit-wheels"
    installed = host.get_fact(Command, f"cat {marker} 2>/dev/null || true")
    install = server.shell(
        name="Install the app into its venv (pip --no-index)",
        # a venv of another Python (the host upgraded from Debian 12 to 13: its venv/bin/python now points at 3.13,
        # its packages are 3.11's) is made again
        commands=[
            f'[ "$({app_dir}/venv/bin/python -I -c \'import sys; print("%d.%d" % sys.version_info[:2])\' '
            f'2>/dev/null)" = {python} ] || {{ rm -rf {app_dir}/venv && python3 -m venv {app_dir}/venv; }}',
            f"rm -rf {app_dir}/wheelhouse && mkdir -m 755 {app_dir}/wheelhouse && "
            f"tar -xf {app_dir}/{wheelhouse.ARCHIVE} --no-same-owner -C {app_dir}/wheelhouse",
            f"{app_dir}/venv/bin/pip install -q --no-index --find-links {app_dir}/wheelhouse "
            f"--force-reinstall session-kit",
            f"echo {wheels_hash} > {marker}",
        ],
        _if=lambda: (installed or "").strip() != wheels_hash,
        **bounded(600),
    )
    me = private_ip(host)
    env = app_environment(
        cluster.strategy,
        cluster.vars,
        cluster.secrets,
        node=host.name,
        private_ip=me,
        peers=[node["ip"] for node in cluster.nodes("app") if node["ip"] != me],
        redis_ip=cluster.first_ip("redis"),
        db_ip=cluster.first_ip("db"),
        sentinels=[node["ip"] for node in cluster.sentinel_nodes()],
        cluster_nodes=[(node["ip"], node["port"]) for node in cluster.cluster_instances()],
    )
    env["FORWARDED_ALLOW_IPS"] = ",".join(node["ip"] for node in cluster.nodes("lb"))
    # app_workers "auto": the host's cores. A changed value changes the env file, which restarts the node in its turn.
    cores = host.get_fact(Command, "nproc") if values["app_workers"] == "auto" else None
    env["WORKERS"] = str(
        app_workers(
            values["app_workers"], cluster.strategy.name, int(cores) if (cores or "").strip().isdigit() else None
        )
    )
    env_file = render(ENV, name="App settings", owner=f"root:{user}", mode="640", env=env)
    unit = render(UNIT, name="App unit", mode="644", strategy=cluster.strategy.name, **values)
    systemd.daemon_reload(name="Reload systemd units", _if=unit.did_change)
    # A running node that must restart does so later, in its turn (deploys/rolling.py); one that was not running
    # starts here with what was just installed. A change of strategy restarts every node at once, here: nodes of two
    # strategies cannot share sessions (nor a replication snapshot), so there is nothing a rolling switch would keep.
    changed = any_changed(install, env_file, unit)
    switching = was_running and running_strategy not in ("", cluster.strategy.name)
    NEEDS_RESTART[host.name] = lambda: was_running and not switching and changed()
    systemd.service(
        name="Restart the app: the strategy changed",
        service="session-kit-app",
        restarted=True,
        _if=lambda: switching and changed(),
    )
    systemd.service(name="Keep the app running and enabled", service="session-kit-app", running=True, enabled=True)
    # A node just started (or switched) serves before the deploy goes on: what comes next may send it traffic.
    server.shell(
        name="Wait until the app answers /healthz",
        commands=[wait_healthy_command(f"http://{me}:{values['app_port']}/healthz", HEALTHY_WITHIN, 0)],
        _if=lambda: not was_running or (switching and changed()),
        **bounded(HEALTHY_WITHIN + 30),
    )
