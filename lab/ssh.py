"""SSH to the lab hosts: one key pair, a known_hosts file with each host's own key, an ssh config for people,
pyinfra and testinfra (strict host key checking stays on)."""

from __future__ import annotations

import subprocess
import time

from . import config
from .sh import LabError, run


def ensure_key(state: config.Paths) -> str:
    state.ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not state.key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "session-kit-lab", "-f", str(state.key)])
    return state.key.with_suffix(".pub").read_text()


def write_config(state: config.Paths, hosts: list, user: str = "root") -> None:
    state.known_hosts.write_text("".join(f"{h.name},{h.ip} {' '.join(h.host_key())}\n" for h in hosts))
    entries = "".join(f"Host {h.name}\n    HostName {h.ip}\n" for h in hosts)
    state.ssh_config.write_text(
        f"# Written by `python -m lab up`: ssh -F {state.ssh_config} lab1\n{entries}"
        f"Host lab* {config.subnet().network_address.exploded.rsplit('.', 1)[0]}.*\n"
        f"    User {user}\n    IdentityFile {state.key}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {state.known_hosts}\n    StrictHostKeyChecking yes\n"
        f"    ConnectTimeout 5\n    BatchMode yes\n    LogLevel ERROR\n"
    )


def ssh(state: config.Paths, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return run(["ssh", "-F", str(state.ssh_config), host, command], check=False, timeout=timeout)


# pyinfra's apt.update(cache_time=...) skips `apt-get update` while this stamp is fresher than cache_time
APT_STAMP = "/var/lib/apt/periodic/update-success-stamp"


def update_apt_lists(state: config.Paths, host, sudo: bool = False, timeout: float = 120) -> None:
    """`apt-get update` on a new host, as a provisioned server comes (its package lists fresh). The lab runs it on
    one host at a time: several hosts' updates at one instant race in the apt proxy (lab/proxy.py), and a host that
    loses waits out apt's timeouts (a first apply of 5 hosts took 358 s instead of 53 s). A failure is only said:
    the deploy's own update tries again."""
    command = f"apt-get update -qq >/dev/null && mkdir -p {APT_STAMP.rsplit('/', 1)[0]} && touch {APT_STAMP}"
    try:
        result = ssh(state, host.name, f"sudo -n sh -c '{command}'" if sudo else command, timeout=timeout)
        problem = "" if result.returncode == 0 else result.stderr.strip()[-200:] or f"exit {result.returncode}"
    except LabError as error:
        problem = str(error)
    if problem:
        print(f"         {host.name}: apt-get update failed ({problem}); the deploy tries again", flush=True)


def wait_running(state: config.Paths, host, timeout: float = 90) -> str:
    """Wait until the host's systemd has finished booting; returns its state ('running')."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if host.pid() is None:
            raise LabError(f"{host.name}: systemd-nspawn exited, see {host.dir / 'console.log'}")
        result = ssh(
            state, host.name, "systemctl is-system-running --wait", timeout=max(5, deadline - time.monotonic())
        )
        last = (result.stdout.strip() or result.stderr.strip()).splitlines()[-1:] or [""]
        last = last[0]
        if result.returncode == 0 or last in ("running", "degraded"):
            if last == "degraded":
                failed = ssh(state, host.name, "systemctl --failed --no-legend --plain").stdout.strip()
                raise LabError(f"{host.name}: systemd is degraded, failed units: {failed or '?'}")
            return last
        time.sleep(0.3)
    raise LabError(f"{host.name}: not running after {timeout} s (last answer: {last})")
