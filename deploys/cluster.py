"""What the deploys read from the inventory: the merged variables of a host (with defaults), the hosts of each role,
and the inventory's secrets. Validation runs here, before any operation is declared. And how long a remote step may
take: every step is bounded, and one past its bound fails with one line naming the host and the step."""

from __future__ import annotations

import functools
import io
import json
import os
import time
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import BaseStateCallback
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server

from session_kit import secrets as kit_secrets
from session_kit.inventory import check, private_ip
from session_kit.platforms import PLATFORM, Platform, platform_of
from session_kit.strategies import STRATEGIES, Strategy, cluster_layout, lb_method, redis_mode, sentinel_hosts
from session_kit.validate import KitError

__all__ = [
    "APT_BOUND",
    "STEP_BOUND",
    "Cluster",
    "ROOT",
    "bounded",
    "bounded_deploy",
    "install_packages",
    "private_ip",
    "render",
    "template",
]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"


# How long one remote step may take, in seconds, before it is stopped and fails with one line naming the host and
# the step. A step that installs nothing (a file, a psql statement, systemctl, whose own stop timeout is 90 s):
STEP_TIMEOUT = 180
# One apt command (update, install): apt gives up on a stalled download after APT_HTTP_TIMEOUT and tries again
# APT_RETRIES times on its own; the step's bound stops it for good, and pyinfra tries the whole step once more.
APT_TIMEOUT = 300
APT_HTTP_TIMEOUT = 30
APT_RETRIES = 3
APT_CONF = "/etc/apt/apt.conf.d/80session-kit"


def bounded(seconds: int, retries: int = 0) -> dict:
    """pyinfra global arguments that bound each command of an operation to `seconds` on the host itself.

    pyinfra's own `_timeout` only stops waiting on the controller: the command keeps running on the host (holding
    apt's lock, for one). So the command runs under coreutils' timeout, which stops it and its children at the
    bound (TERM, then KILL 10 s later); `_timeout`, a little longer, still ends the wait when the connection itself
    is stuck."""
    return {
        "_shell_executable": f"timeout -k 10 {seconds} sh",
        "_timeout": seconds + 30,
        **({"_retries": retries, "_retry_delay": 5} if retries else {}),
    }


STEP_BOUND = bounded(STEP_TIMEOUT)
APT_BOUND = bounded(APT_TIMEOUT, retries=1)


def bounded_deploy(name: str, data_defaults: dict, bound: dict = STEP_BOUND):
    """pyinfra's @deploy whose every operation (and fact) gets `bound` unless the operation says otherwise.

    The bound must be passed as the deploy's global arguments: a deploy's data_defaults cannot carry them (pyinfra
    takes the deploy call's own _timeout, None, over any data default inside it)."""

    def decorate(func):
        deployed = deploy(name, data_defaults=data_defaults)(func)

        @functools.wraps(func)
        def call(*args, **kwargs):
            return deployed(*args, **{**bound, **kwargs})

        return call

    return decorate


_apt_configured: set[str] = set()  # hosts whose apt.conf.d file is declared in this run (site.py runs once per host)


def install_packages(name: str, packages: list[str]):
    """apt.packages with bounds: apt's own timeouts and retries in an apt.conf.d file (they reach `apt-get update`,
    which takes no extra arguments; declared before a host's first install only), and each apt command bounded on
    the host (APT_BOUND)."""
    if host.name not in _apt_configured:
        _apt_configured.add(host.name)
        files.put(
            name="apt: time out and retry stalled downloads",
            dest=APT_CONF,
            mode="644",
            src=io.StringIO(
                "// Managed by session-kit (deploys/cluster.py): "
                "a stalled download fails and is retried, never hangs.\n"
                f'Acquire::http::Timeout "{APT_HTTP_TIMEOUT}";\nAcquire::https::Timeout "{APT_HTTP_TIMEOUT}";\n'
                f'Acquire::Retries "{APT_RETRIES}";\nDPkg::Lock::Timeout "60";\n'
            ),
        )
    return apt.packages(name=name, packages=packages, update=True, cache_time=3600, **APT_BOUND)


class _StepClock(BaseStateCallback):
    """When each step began on each host, and its name: what StepBounds and StepTimes both need."""

    def __init__(self):
        self.started: dict[tuple[str, str], float] = {}

    def operation_host_start(self, state, host, op_hash):
        self.started[host.name, op_hash] = time.monotonic()

    def elapsed(self, host, op_hash) -> float:
        return time.monotonic() - self.started.pop((host.name, op_hash), time.monotonic())

    @staticmethod
    def step_name(state, op_hash) -> str:
        return ", ".join(state.get_op_meta(op_hash).names) or "operation"


class StepBounds(_StepClock):
    """Says in one line which step on which host ran past its bound (pyinfra itself only logs "Command timed out"
    or the command's exit status, under a header printed long before)."""

    def operation_host_retry(self, state, host, op_hash, retry_num, max_retries):
        self.started[host.name, op_hash] = time.monotonic()  # the bound is per try

    def operation_host_error(self, state, host, op_hash, retry_attempt=0, max_retries=0):
        arguments = state.get_op_data_for_host(host, op_hash).global_arguments
        bound, on_host = _bound(arguments)
        elapsed = self.elapsed(host, op_hash)
        if bound and elapsed >= bound - 1:
            logger.error(
                f"session-kit: {host.name}: step '{self.step_name(state, op_hash)}' ran past its bound of "
                f"{bound} s and "
                + ("was stopped" if on_host else "pyinfra stopped waiting for it")
                + (f" (tried {retry_attempt + 1} times)" if retry_attempt else "")
            )


def _bound(arguments) -> tuple[int | None, bool]:
    """The bound of an operation, and whether the host enforces it: the host-side timeout of bounded(), else
    pyinfra's _timeout."""
    shell = str(arguments.get("_shell_executable") or "")
    if shell.startswith("timeout "):
        return int(shell.split()[-2]), True
    return arguments.get("_timeout") or None, False


class StepTimes(_StepClock):
    """With SESSION_KIT_STEP_TIMES=FILE in the environment, each step's seconds on each host (its retries included)
    go into FILE as JSON lines ({"host", "step", "seconds", "ok"}): where an apply's time goes (benchmarks/deploy.py
    reads them)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _write(self, state, host, op_hash, ok: bool) -> None:
        entry = {
            "host": host.name,
            "step": self.step_name(state, op_hash),
            "seconds": round(self.elapsed(host, op_hash), 3),
            "ok": ok,
        }
        with open(self.path, "a") as out:
            out.write(json.dumps(entry) + "\n")

    def operation_host_success(self, state, host, op_hash, retry_count=0):
        self._write(state, host, op_hash, True)

    def operation_host_error(self, state, host, op_hash, retry_attempt=0, max_retries=0):
        self._write(state, host, op_hash, False)


def report_bounds(pyinfra_state) -> None:
    """Register StepBounds once per pyinfra run (and StepTimes, when SESSION_KIT_STEP_TIMES asks for it)."""
    if not any(isinstance(handler, StepBounds) for handler in pyinfra_state.callback_handlers):
        pyinfra_state.add_callback_handler(StepBounds())
        if os.environ.get("SESSION_KIT_STEP_TIMES"):
            pyinfra_state.add_callback_handler(StepTimes(os.environ["SESSION_KIT_STEP_TIMES"]))


def template(path: str) -> str:
    """A template by its target path: template('etc/redis/redis.conf') -> templates/etc/redis/redis.conf.j2."""
    return str(TEMPLATES / (path.lstrip("/") + ".j2"))


def barrier(name: str) -> None:
    """A step declared here on every host, that does nothing. pyinfra runs each host's steps in the order it
    declared them, and interleaves the hosts' steps by position: the n-th step of every host together. So an app
    node's wait for its store could run before the store's host had made the store, whenever the store host
    declared more steps before it (a role, a table, a Redis Cluster not there yet: the app never got ready). A step
    declared at one place on every host is one step of the run: nothing declared after it on any host runs before
    everything declared before it on every host has."""
    server.shell(name=name, commands=["true"], _if=lambda: False)


def render(dest: str, *, name: str, mode: str, owner: str | None = None, src: str | None = None, **data):
    """files.template of the file at `dest` from its template (the one for the target path `src`, where another file
    shares it or the target's path varies), owned by owner, "user:group" as chown takes it (None: pyinfra's default,
    no chown), rendered with **data (pyinfra's other arguments, _if for one, pass through)."""
    user, _, group = (owner or "").partition(":")
    return files.template(
        name=name, src=template(src or dest), dest=dest, user=user or None, group=group or None, mode=mode, **data
    )


class Cluster:
    """The whole inventory as the deploys need it, checked."""

    def __init__(self, host, inventory):
        self.host = host
        report_bounds(state)
        try:
            self.vars, self.groups = check(host, inventory)
            self.secrets = kit_secrets.load(ROOT / self.vars["secrets_dir"], self.vars["inventory_name"])
            kit_secrets.check_usable(self.vars, self.secrets)
            self.platform: Platform = platform_of(
                host.name, host.get_fact(Command, PLATFORM) or "", self.vars["postgres_port"]
            )
        except KitError as error:
            raise PyinfraError(str(error)) from None
        self.strategy: Strategy = STRATEGIES[self.vars["session_strategy"]]
        self.lb_method = lb_method(self.vars)

    def values(self, defaults: dict) -> dict:
        """One component's variables (its block of session_kit/defaults.py), as merged for this host."""
        return {key: self.vars[key] for key in defaults}

    def has_role(self, role: str) -> bool:
        return self.host in self.groups[role]

    def nodes(self, role: str) -> list[dict[str, str]]:
        return [{"name": h.name, "ip": private_ip(h)} for h in self.groups[role]]

    def sentinel_nodes(self) -> list[dict[str, str]]:
        """Where Redis Sentinels run (redis_mode=sentinel with a strategy that uses Redis; else nowhere)."""
        if redis_mode(self.vars, self.strategy) != "sentinel":
            return []
        hosts = sentinel_hosts(self.groups["redis"], self.groups["app"])
        return [{"name": h.name, "ip": private_ip(h)} for h in hosts]

    def cluster_instances(self) -> list[dict]:
        """Redis Cluster's instances (redis_mode=cluster with a strategy that uses Redis; else none): name, ip, port."""
        if redis_mode(self.vars, self.strategy) != "cluster":
            return []
        return [
            {"name": h.name, "ip": private_ip(h), "port": port}
            for h, port in cluster_layout(self.groups["redis"], self.vars["redis_cluster_port"])
        ]

    def runs_sentinel(self) -> bool:
        return any(node["name"] == self.host.name for node in self.sentinel_nodes())

    def first_ip(self, role: str) -> str | None:
        nodes = self.nodes(role)
        return nodes[0]["ip"] if nodes else None
