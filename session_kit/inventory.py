"""An inventory as the kit sees it, without connecting to anything: each host's merged variables, the hosts of each
role, and the chosen strategy, checked. Used by deploys/cluster.py inside pyinfra, and by the verification suite and
`./kit deploy` outside it."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import secrets as kit_secrets
from . import tls as kit_tls
from .defaults import ALL_DEFAULTS
from .strategies import STRATEGIES, Strategy, cluster_layout, lb_method, redis_mode, sentinel_hosts
from .validate import KitError, check_data, check_groups, check_same
from .variables import controller_path

ROLES = ("lb", "app", "redis", "db")
_ROOT = Path(__file__).resolve().parent.parent


def variables(host) -> dict[str, Any]:
    """Every kit variable of a pyinfra host: inventory values over the documented defaults (other keys kept, so that
    a misspelt variable can be caught)."""
    data = dict(host.data.dict())
    merged = {key: host.data.get(key, default) for key, default in ALL_DEFAULTS.items()}
    return {**data, **merged, "inventory_name": host.data.get("inventory_name")}


def private_ip(host) -> str:
    return host.data.get("private_ip") or host.data.get("ssh_hostname") or host.name


def members(inventory, role: str) -> list:
    try:
        return list(inventory.get_group(role))
    except Exception:  # pyinfra raises NoGroupError for a group the inventory does not define
        return []


def check(host, inventory) -> tuple[dict[str, Any], dict[str, list]]:
    """Validate one host's variables, the values every host must share, and the inventory's groups; return the
    host's variables and the groups. Raises KitError."""
    values = variables(host)
    groups = {role: members(inventory, role) for role in ROLES}
    check_data(values, host.name)
    check_same({other.name: variables(other) for other in inventory})
    check_groups(
        values["session_strategy"],
        {role: [h.name for h in hosts] for role, hosts in groups.items()},
        values["redis_mode"],
        values["lb_vip"],
    )
    hosts = {private_ip(h) for h in inventory}
    if values["lb_vip"] and values["lb_vip"] in hosts:
        raise KitError(f"lb_vip: {values['lb_vip']} is a host's own address; the floating address must be a free one")
    return values, groups


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    ip: str  # private address
    ssh: dict[str, Any]
    roles: tuple[str, ...]

    def as_root(self, command: str) -> str:
        """A shell command to send over SSH that runs as root: whole (a script of several lines too) through
        `sudo -n sh -c` when the inventory logs in as a sudo user (`_sudo`), as it is when it logs in as root."""
        return f"sudo -n sh -c {shlex.quote(command)}" if self.ssh.get("_sudo") else command


@dataclasses.dataclass(frozen=True)
class Deployment:
    strategy: Strategy
    lb_method: str
    vars: dict[str, Any]
    nodes: tuple[Node, ...]

    def role(self, role: str) -> list[Node]:
        return [node for node in self.nodes if role in node.roles]

    def sentinels(self) -> list[Node]:
        """Where Redis Sentinels run: redis_mode=sentinel with a strategy that uses Redis; else none."""
        if redis_mode(self.vars, self.strategy) != "sentinel":
            return []
        return sentinel_hosts(self.role("redis"), self.role("app"))

    def cluster_instances(self) -> list[tuple[Node, int]]:
        """Redis Cluster's instances, (node, port): redis_mode=cluster with a strategy that uses Redis; else none."""
        if redis_mode(self.vars, self.strategy) != "cluster":
            return []
        return cluster_layout(self.role("redis"), self.vars["redis_cluster_port"])

    def ssh_config_text(self) -> str:
        """An ssh config (one Host per inventory host) from the inventory's SSH variables, strict host key checking
        kept: what the verification suite, the drills and `status` connect with."""
        lines = []
        for node in self.nodes:
            ssh = node.ssh
            lines += [f"Host {node.name}", f"    HostName {ssh.get('ssh_hostname', node.name)}"]
            for option, key in (
                ("User", "ssh_user"),
                ("Port", "ssh_port"),
                ("IdentityFile", "ssh_key"),
                ("UserKnownHostsFile", "ssh_known_hosts_file"),
                ("StrictHostKeyChecking", "ssh_strict_host_key_checking"),
            ):
                if ssh.get(key):
                    lines.append(f"    {option} {os.path.expanduser(str(ssh[key]))}")
            lines.append("    BatchMode yes\n    ConnectTimeout 10\n    LogLevel ERROR")
        return "\n".join(lines) + "\n"

    def secrets(self) -> dict[str, str]:
        """The inventory's secrets, as the deploys use them (session_kit/secrets.py), from this controller."""
        return kit_secrets.load(_ROOT / self.vars["secrets_dir"], self.vars["inventory_name"])

    def _lb_address(self) -> str:
        if self.vars.get("lb_vip"):
            return self.vars["lb_vip"]
        lb = self.role("lb")[0]
        return lb.ssh.get("ssh_hostname") or lb.ip

    @property
    def lb_url(self) -> str:
        """The balancer's URL for clients: https://ADDRESS[:PORT] (nginx_listen_tls) with lb_tls, else
        http://ADDRESS[:PORT] (nginx_listen)."""
        if not self.vars.get("lb_tls"):
            return self.lb_http_url
        port = str(self.vars["nginx_listen_tls"]).rpartition(":")[2] or "443"
        return f"https://{self._lb_address()}" + ("" if port == "443" else f":{port}")

    @property
    def lb_http_url(self) -> str:
        """The balancer's plain listener (nginx_listen): with lb_tls, it answers every request with a 308 to
        lb_url."""
        port = str(self.vars["nginx_listen"]).rpartition(":")[2] or "80"
        return f"http://{self._lb_address()}" + ("" if port == "80" else f":{port}")

    def tls_names(self) -> list[str]:
        """What the balancer's self-signed certificate names: each lb host's ssh_hostname and private address, and
        the floating address (lb_vip)."""
        return kit_tls.subject_names(
            [
                *(name for lb in self.role("lb") for name in (lb.ssh.get("ssh_hostname") or lb.name, lb.ip)),
                *([self.vars["lb_vip"]] if self.vars.get("lb_vip") else []),
            ]
        )

    @property
    def tls_certificate(self) -> Path | None:
        """The certificate (chain) file the balancer serves, on this controller; None without lb_tls."""
        if not self.vars.get("lb_tls"):
            return None
        if self.vars.get("lb_tls_certificate"):
            return controller_path(self.vars["lb_tls_certificate"])
        return kit_tls.certificate_file(_ROOT / self.vars["secrets_dir"], self.vars["inventory_name"])

    @property
    def tls_ca(self) -> Path | None:
        """The CA file a client of the balancer trusts: the inventory's self-signed certificate (made by the first
        deploy), or None: the system's CAs (the inventory's own certificate, or no TLS)."""
        if not self.vars.get("lb_tls") or self.vars.get("lb_tls_certificate"):
            return None
        return self.tls_certificate

    @property
    def tls_verify(self) -> str | bool:
        """requests' `verify=` for the balancer: the CA file's path, or True (the system's CAs)."""
        return str(self.tls_ca) if self.tls_ca else True

    def ssl_context(self):
        """An ssl.SSLContext for the balancer (aiohttp, asyncio): verifying against tls_ca, or the system's CAs."""
        import ssl

        return ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)


class _Data(dict):
    def dict(self) -> dict[str, Any]:
        return dict(self)


@dataclasses.dataclass
class _Host:
    """A host as `pyinfra INVENTORY debug-inventory --json` describes it, shaped like a pyinfra host."""

    name: str
    groups: list[str]
    data: _Data


class _Inventory:
    def __init__(self, hosts: list[_Host]):
        self.hosts = hosts

    def __iter__(self):
        return iter(self.hosts)

    def get_group(self, name: str) -> list[_Host]:
        return [h for h in self.hosts if name in h.groups]


def read(path: str | Path, overrides: dict[str, Any] | None = None) -> _Inventory:
    """The inventory exactly as pyinfra reads it (group data and --data included), without connecting to any host.

    pyinfra runs in a child process: importing its CLI here would monkey-patch this process with gevent."""
    pyinfra = Path(sys.executable).with_name("pyinfra")
    command = [str(pyinfra), str(path), "debug-inventory", "--json"]
    for key, value in (overrides or {}).items():
        command += ["--data", f"{key}={value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        detail = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise KitError(f"{path}: pyinfra cannot read it: {detail[-1] if detail else result.returncode}")
    hosts = json.loads(result.stdout[result.stdout.index("[") :])
    return _Inventory([_Host(h["name"], h["groups"], _Data(h["data"])) for h in hosts])


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Deployment:
    """Read and check an inventory the way `pyinfra INVENTORY ... --data k=v` would."""
    inventory = read(path, overrides)
    hosts = list(inventory)
    if not hosts:
        raise KitError(f"{path}: the inventory holds no hosts")
    values = {}
    for host in hosts:
        values, _ = check(host, inventory)
    for name in kit_secrets.NAMES:
        kit_secrets.from_environment(name)  # an override that cannot be written safely stops here, too
    ssh_keys = (
        "ssh_hostname",
        "ssh_user",
        "ssh_port",
        "ssh_key",
        "ssh_known_hosts_file",
        "ssh_strict_host_key_checking",
        "_sudo",
    )
    nodes = tuple(
        Node(
            name=h.name,
            ip=private_ip(h),
            ssh={k: h.data.get(k) for k in ssh_keys if h.data.get(k)},
            roles=tuple(r for r in ROLES if r in h.groups),
        )
        for h in hosts
    )
    return Deployment(
        strategy=STRATEGIES[values["session_strategy"]], lb_method=lb_method(values), vars=values, nodes=nodes
    )
