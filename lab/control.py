"""up, down and status: the lab as a whole."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import time
from pathlib import Path

from . import config, image, network, proxy, ssh
from .hosts import CGROUP_ROOTS, Host
from .inventory import example_hosts
from .mirror import machine_mirror
from .sh import LabError, Progress, run


def preflight() -> None:
    """Everything the lab needs from the machine, checked before anything is made."""
    if os.geteuid() != 0:
        raise LabError("must run as root: the lab creates network namespaces, mounts and containers")
    release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    if "ID=debian" not in release.splitlines():
        raise LabError("needs Debian (12, bookworm): /etc/os-release does not say ID=debian")
    for command in ("debootstrap", "systemd-nspawn", "ip", "ssh", "ssh-keygen", "apt-cacher-ng", "mount"):
        if shutil.which(command) is None:
            raise LabError(f"{command}: not installed (./kit setup installs what the lab needs)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        run(["modprobe", "overlay"], check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise LabError("the kernel has no overlay filesystem (modprobe overlay failed)")
    if not Path("/proc/self/ns/net").exists():
        raise LabError("the kernel has no network namespaces")
    if not any(root.exists() for root in CGROUP_ROOTS):
        raise LabError("no cgroup hierarchy at /sys/fs/cgroup/systemd or /sys/fs/cgroup/unified")
    network.check_subnet_free()


def recorded(state: config.Paths) -> list[Host]:
    """Every host this lab has a trace of: a directory, a namespace or a cgroup named like its own."""
    indexes: set[int] = set()
    if state.hosts.exists():
        indexes.update(int(p.name[3:]) for p in state.hosts.iterdir() if p.name[3:].isdigit())
    for ns in network.own_netns():
        suffix = ns.removeprefix(config.PREFIX + "-lab")
        if suffix.isdigit():
            indexes.add(int(suffix))
    for root in CGROUP_ROOTS:
        group = root / config.PREFIX
        if group.exists():
            indexes.update(int(p.name[3:]) for p in group.iterdir() if p.is_dir() and p.name[3:].isdigit())
    return [Host(state, i) for i in sorted(indexes)]


def recorded_shape(state: config.Paths) -> str | None:
    """The shape the running lab's hosts were made in (hosts.json), None when there is no record."""
    try:
        return json.loads(state.inventory.read_text()).get("shape", "lab")
    except (OSError, ValueError):
        return None


def healthy(state: config.Paths, host: Host) -> bool:
    if not host.booted_as_now() or not host.mounted() or not Path(f"/run/netns/{config.netns(host.name)}").exists():
        return False
    return ssh.ssh(state, host.name, "systemctl is-system-running", timeout=10).stdout.strip() == "running"


def releases_of(spec: str | None, count: int) -> list[str]:
    """--release R (every host) or R1,R2,... (host i gets the i-th, the last one for the rest): one per host."""
    names = [name.strip() for name in (spec or config.SUITE).split(",") if name.strip()] or [config.SUITE]
    for name in names:
        if name not in config.RELEASES:
            raise LabError(f"--release: one of {', '.join(config.RELEASES)} (or a comma-separated list), got {name!r}")
    return [names[min(i, len(names) - 1)] for i in range(count)]


def up(count: int | None = None, shape: str = "lab", release: str | None = None) -> dict:
    """Hosts lab1..labN running, in `shape` (config.SHAPES); the servers shape makes as many hosts as
    inventories/example.py names. Each host of its release (releases_of: one for all, or one per host). Hosts
    already up in that shape and release are kept; any other is made again."""
    if shape not in config.SHAPES:
        raise LabError(f"shape: one of {', '.join(config.SHAPES)}, got {shape!r}")
    if shape == "servers":
        needed = len(example_hosts())
        if count not in (None, needed):
            raise LabError(
                f"--servers makes the {needed} hosts of inventories/example.py (a host per role), not --hosts {count}"
            )
        count = needed
    count = config.DEFAULT_HOSTS if count is None else count
    if not 1 <= count <= config.MAX_HOSTS:
        raise LabError(f"--hosts: must be between 1 and {config.MAX_HOSTS}, got {count}")
    releases = releases_of(release, count)
    preflight()
    user = config.SERVER_USER if shape == "servers" else "root"
    state = config.paths()
    progress = Progress()
    made: list[Host] = []
    bridge_made = proxy_made = False
    try:
        for wanted_release in dict.fromkeys(releases):
            base = state.base_of(wanted_release)
            with progress.step(f"image ({wanted_release})" if wanted_release != config.SUITE else "image"):
                if image.ready(base):
                    print(f"         cached at {base}", flush=True)
                else:
                    image.build(base, wanted_release)
                    print(f"         built {base}: {image.size_mb(base)} MB", flush=True)
        mirrors = {name: machine_mirror(name) for name in set(releases)}
        with progress.step("network and apt proxy"):
            bridge_made = network.ensure_bridge()
            proxy_made = proxy.ensure(state)
            public_key = ssh.ensure_key(state)
        wanted = [Host(state, i) for i in range(1, count + 1)]
        existing = {h.index: h for h in recorded(state)}
        with progress.step("check existing hosts"):
            same_shape = recorded_shape(state) == shape
            keep = {
                h.index
                for h in wanted
                if same_shape
                and h.index in existing
                and state.ssh_config.exists()
                and (existing[h.index].release() or config.SUITE) == releases[h.index - 1]
                and healthy(state, h)
            }
            for index, host in existing.items():
                if index not in keep:
                    host.destroy()  # beyond N, or a leftover of a run that was killed
        todo = [h for h in wanted if h.index not in keep]
        if todo:
            with progress.step(f"start {len(todo)} host(s)"):
                everyone = [(h.name, h.ip) for h in wanted]
                for host in todo:
                    made.append(host)
                    release_of_host = releases[host.index - 1]
                    host.create(everyone, mirrors[release_of_host], proxy.url(), public_key, shape, release_of_host)
                for host in todo:
                    host.boot()
                ssh.write_config(state, wanted, user)
                with concurrent.futures.ThreadPoolExecutor(len(todo)) as pool:
                    list(pool.map(lambda h: ssh.wait_running(state, h), todo))
            with progress.step(f"apt lists of {len(todo)} new host(s), one at a time"):
                for host in todo:
                    ssh.update_apt_lists(state, host, sudo=shape == "servers")
        ssh.write_config(state, wanted, user)
        if keep and not todo:
            for host in wanted:  # a second `up` re-checks the hosts it kept
                ssh.wait_running(state, host)
        data = describe(state, wanted, shape, user)
        state.inventory.write_text(json.dumps(data, indent=2) + "\n")
    except BaseException:
        # Nothing half made: what this call created goes away again.
        for host in made:
            host.destroy()
        if not [h for h in recorded(state) if h.pid() is not None]:
            if proxy_made:
                proxy.stop(state)
            if bridge_made:
                network.remove_bridge()
        raise
    total = sum(progress.times.values())
    made_as = f" as servers (root login refused; {user} with sudo)" if shape == "servers" else ""
    if set(releases) != {config.SUITE}:
        made_as += " of " + ", ".join(f"{name} ({releases.count(name)})" for name in dict.fromkeys(releases))
    print(
        f"lab up: {count} host(s) running{made_as} ({len(keep)} kept, {len(todo)} started) in {total:.1f}s; "
        f"ssh -F {state.ssh_config} lab1",
        flush=True,
    )
    return data


def describe(state: config.Paths, hosts: list[Host], shape: str = "lab", user: str = "root") -> dict:
    return {
        "shape": shape,
        "user": user,
        "subnet": str(config.subnet()),
        "gateway": str(config.bridge_ip()),
        "apt_proxy": proxy.url(),
        "ssh_key": str(state.key),
        "known_hosts": str(state.known_hosts),
        "ssh_config": str(state.ssh_config),
        "hosts": [{"name": h.name, "ip": str(h.ip), "release": h.release() or config.SUITE} for h in hosts],
    }


def _ssh_clients(state: config.Paths) -> list[int]:
    """ssh processes (ControlMaster ones included) that talk to the lab's hosts."""
    marks = (str(state.ssh_config), str(state.key), config.subnet().network_address.exploded.rsplit(".", 1)[0] + ".")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        talks_to_lab = any(mark in cmdline for mark in marks) or re.search(r"\blab\d+\b", cmdline)
        if cmdline.startswith("ssh") and talks_to_lab:
            found.append(int(proc.name))
    return found


def leftovers(state: config.Paths) -> list[str]:
    left = []
    mounts = Path("/proc/mounts").read_text()
    left += [f"mount {line.split()[1]}" for line in mounts.splitlines() if str(state.hosts) in line]
    left += [f"netns {ns}" for ns in network.own_netns()]
    left += [f"link {link}" for link in network.own_links()]
    left += [f"cgroup {root / config.PREFIX}" for root in CGROUP_ROOTS if (root / config.PREFIX).exists()]
    if proxy.pid(state) is not None:
        left.append("apt proxy process")
    left += [f"ssh process {pid}" for pid in _ssh_clients(state)]
    left += [f"host directory {p}" for p in state.hosts.glob("*")] if state.hosts.exists() else []
    return left


def down(purge: bool = False) -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root: the lab's namespaces, mounts and containers belong to root")
    state = config.paths()
    progress = Progress()
    with progress.step("stop hosts"):
        hosts = recorded(state)
        with concurrent.futures.ThreadPoolExecutor(max(1, len(hosts))) as pool:
            list(pool.map(lambda h: h.destroy(), hosts))
    with progress.step("remove network, proxy, ssh clients"):
        for pid in _ssh_clients(state):
            try:
                os.kill(pid, 15)
            except OSError:
                pass
        proxy.stop(state)
        network.remove_bridge()
        for root in CGROUP_ROOTS:
            group = root / config.PREFIX
            if group.exists():
                group.rmdir()
        for path in (state.hosts, state.inventory, state.ssh_config, state.known_hosts):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
    if purge:
        with progress.step("purge cached image and package cache"):
            run(["rm", "-rf", "--one-file-system", str(state.cache)])
            run(["rm", "-rf", "--one-file-system", str(state.state)])
    left = leftovers(state)
    if left:
        raise LabError("lab down: left behind: " + "; ".join(left))
    print(
        f"lab down: nothing left (no hosts, mounts, namespaces, links, cgroups or proxy) in "
        f"{sum(progress.times.values()):.1f}s" + (" ; cached image purged" if purge else ""),
        flush=True,
    )


def power_cycle(name: str, off_seconds: float = 0, wait: bool = True) -> dict[str, float]:
    """One running host's every process killed at once (Host.power_off), kept off off_seconds, then booted again;
    with wait, until its systemd has finished booting. Returns the seconds each step took."""
    if os.geteuid() != 0:
        raise LabError("must run as root: powering a lab host off and on kills and starts its container")
    state = config.paths()
    host = next((h for h in recorded(state) if h.name == name), None)
    if host is None or host.pid() is None:
        running = ", ".join(h.name for h in recorded(state) if h.pid() is not None) or "none"
        raise LabError(f"{name}: not a running lab host (running: {running})")
    started = time.monotonic()
    host.power_off()
    off = time.monotonic()
    time.sleep(off_seconds)
    host.boot()
    booted = time.monotonic()
    if wait:
        ssh.wait_running(state, host)
    return {
        "kill_seconds": round(off - started, 3),
        "off_seconds": round(booted - off, 3),
        "boot_seconds": round(time.monotonic() - booted, 3),
    }


def link(name: str, up: bool) -> None:
    """A running lab host cut off the network (its cable pulled: up=False) or connected again."""
    if os.geteuid() != 0:
        raise LabError("must run as root: cutting a lab host off changes the machine's links")
    state = config.paths()
    if not any(h.name == name and h.pid() is not None for h in recorded(state)):
        raise LabError(f"{name}: not a running lab host")
    network.set_link(name, up)


def cut(name: str, seconds: float) -> None:
    """link(name, False) for `seconds`, then up again (whatever happens meanwhile)."""
    link(name, False)
    try:
        time.sleep(seconds)
    finally:
        network.set_link(name, True)


def wait_booted(name: str) -> None:
    """Until a lab host's systemd has finished booting (every unit started)."""
    state = config.paths()
    ssh.wait_running(state, Host(state, int(name.removeprefix("lab"))))


def status() -> list[dict]:
    state = config.paths()
    rows = []
    for host in recorded(state):
        alive = host.pid() is not None
        answer = ssh.ssh(state, host.name, "systemctl is-system-running", timeout=10).stdout.strip() if alive else ""
        rows.append(
            {
                "name": host.name,
                "ip": str(host.ip),
                "state": answer or ("stopped" if not alive else "?"),
                "memory_mib": round(host.memory_mib(), 1),
            }
        )
    return rows
