"""One lab host: an overlay over the base image, its own identity, and systemd-nspawn booting it in its netns."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from . import config, network
from .mirror import Mirror
from .sh import LabError, run

CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
# apt on a lab host: seconds without progress before a download is abandoned, and how often it is tried again.
APT_TIMEOUT = 20
APT_RETRIES = 5
# How each host is booted. CAP_NET_ADMIN: nspawn drops it unless it makes the network itself, but the host's own
# namespace (lab/network.py) is where a deploy's firewall (nftables) goes, as on a server; the capability reaches only
# that namespace. A host booted with other flags (an older lab) is made again by `up`.
NSPAWN_FLAGS = (
    "--register=no",
    "--keep-unit",
    "--resolv-conf=off",
    "--timezone=off",
    "--link-journal=no",
    "--console=read-only",
    "--capability=CAP_NET_ADMIN",
)


class Host:
    def __init__(self, state: config.Paths, index: int):
        self.state, self.index = state, index
        self.name, self.ip = config.host_name(index), config.host_ip(index)
        self.dir = state.hosts / self.name
        self.root = self.dir / "root"

    # -- what is there ---------------------------------------------------------------------------------------------

    def cgroups(self) -> list[Path]:
        return [root / config.PREFIX / self.name for root in CGROUP_ROOTS if root.exists()]

    def _nspawn(self) -> tuple[int, bytes] | None:
        """The pid and command line of this host's running nspawn, None when it does not run."""
        try:
            value = int((self.dir / "nspawn.pid").read_text())
            cmdline = Path(f"/proc/{value}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return (value, cmdline) if b"systemd-nspawn" in cmdline and str(self.root).encode() in cmdline else None

    def pid(self) -> int | None:
        running = self._nspawn()
        return running[0] if running else None

    def booted_as_now(self) -> bool:
        """Its nspawn runs with this lab's NSPAWN_FLAGS (not an older lab's)."""
        running = self._nspawn()
        return running is not None and all(flag.encode() in running[1].split(b"\0") for flag in NSPAWN_FLAGS)

    def processes(self) -> list[int]:
        pids: set[int] = set()
        for cgroup in self.cgroups():
            for procs in cgroup.rglob("cgroup.procs") if cgroup.exists() else ():
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except OSError:
                    pass
        return sorted(pids)

    def memory_mib(self) -> float:
        """Proportional set size of every process of the host (nspawn included), in MiB."""
        total = 0
        for value in self.processes():
            try:
                for line in Path(f"/proc/{value}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def mounted(self) -> bool:
        return os.path.ismount(self.root)

    # -- making it -------------------------------------------------------------------------------------------------

    def release(self) -> str | None:
        """The Debian release it was made of (recorded when it was made)."""
        try:
            return (self.dir / "release").read_text().strip()
        except OSError:
            return None

    def create(
        self,
        all_hosts: list[tuple[str, ipaddress.IPv4Address]],
        mirror: Mirror,
        proxy_url: str,
        public_key: str,
        shape: str = "lab",
        release: str = config.SUITE,
    ) -> None:
        self.destroy()
        for sub in ("upper", "work", "root"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "release").write_text(release + "\n")
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.state.base_of(release)},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
                str(self.root),
            ]
        )
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.name + "\n")
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in all_hosts))
        resolv = etc / "resolv.conf"
        resolv.unlink(missing_ok=True)
        # No DNS is reachable: point at the bridge and fail fast instead of hanging on the machine's nameserver.
        resolv.write_text(f"nameserver {config.bridge_ip()}\noptions timeout:1 attempts:1\n")
        # apt reaches packages only through the lab's proxy: a stalled connection to it times out and the download
        # is tried again instead of hanging; no pipelining, which a proxy closing a connection mid-pipeline can
        # leave waiting for answers that never come. (The deploys bound every apt command on top of this.)
        (etc / "apt/apt.conf.d/01session-kit-proxy").write_text(
            f'Acquire::http::Proxy "{proxy_url}";\nAcquire::http::Timeout "{APT_TIMEOUT}";\n'
            f'Acquire::Retries "{APT_RETRIES}";\nAcquire::http::Pipeline-Depth "0";\n'
        )
        sources = (
            f"deb {Mirror.http(mirror.debian)} {release} main\n"
            f"deb {Mirror.http(mirror.debian)} {release}-updates main\n"
        )
        if mirror.security:
            sources += f"deb {Mirror.http(mirror.security)} {release}-security main\n"
        (etc / "apt/sources.list").write_text(sources)
        run(["ssh-keygen", "-A", "-f", str(self.root)])
        if shape == "servers":
            self._as_a_server(public_key)
        else:
            authorize(self.root / "root", public_key, 0, 0)
        network.add_host(self.name, self.ip)

    def _as_a_server(self, public_key: str) -> None:
        """As servers come from a provider: a login user with sudo (no password: key login only) and the key, root
        refused over SSH, passwords refused."""
        user = config.SERVER_USER
        run(["chroot", str(self.root), "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", user])
        uid, gid = (int(run(["chroot", str(self.root), "id", flag, user]).stdout) for flag in ("-u", "-g"))
        sudoers = self.root / f"etc/sudoers.d/90-{user}"
        sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        authorize(self.root / "home" / user, public_key, uid, gid)
        sshd = self.root / "etc/ssh/sshd_config.d/50-session-kit-lab.conf"
        sshd.write_text(
            "# A lab host made as servers come (python -m lab up --servers)\n"
            "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        )
        (self.root / "root/.ssh/authorized_keys").unlink(missing_ok=True)

    def host_key(self) -> str:
        return (self.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]

    def boot(self) -> None:
        cgroups = self.cgroups()
        for cgroup in cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)

        def join_own_cgroups() -> None:
            # Without this, every container shares one cgroup and their systemds see each other's units.
            for cgroup in cgroups:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        log = open(self.dir / "console.log", "ab")
        proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(self.root),
                "-M",
                self.name,
                "--boot",
                f"--network-namespace-path=/run/netns/{config.netns(self.name)}",
                *NSPAWN_FLAGS,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=join_own_cgroups,
        )
        (self.dir / "nspawn.pid").write_text(str(proc.pid))

    # -- unmaking it -----------------------------------------------------------------------------------------------

    def stop(self, timeout: float = 15) -> None:
        value = self.pid()
        if value is not None:
            os.kill(value, signal.SIGTERM)  # nspawn asks the guest's systemd for a clean poweroff
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.1)
        for _ in range(3):  # whatever is left in the host's cgroups, nspawn included after a timeout
            left = self.processes()
            if not left:
                break
            for value in left:
                try:
                    os.kill(value, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)

    def power_off(self, timeout: float = 10) -> None:
        """Every process of the host killed at once (SIGKILL: nspawn, the guest's init and every service), as a
        machine losing power: nothing is stopped, flushed or saved on the way down. What its services had written
        stays on its disk (the overlay), and its network namespace stays, so it boots again as it was. (Unlike a real
        power cut, data written but not yet synced survives in this machine's page cache: the lab cannot take that
        away; see docs/lab.md.)"""
        deadline = time.monotonic() + timeout
        while True:
            left = self.processes()
            running = self.pid()
            if not left and running is None:
                break
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: processes still alive {timeout:g} s after SIGKILL: {left}")
            for cgroup in self.cgroups():
                kill_all = cgroup / "cgroup.kill"  # cgroup v2: the whole subtree at once
                if kill_all.exists():
                    try:
                        kill_all.write_text("1")
                    except OSError:
                        pass
            for value in [*left, *([running] if running is not None else [])]:
                try:
                    os.kill(value, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        self._remove_cgroups(keep_own=True)

    def _remove_cgroups(self, keep_own: bool = False) -> None:
        """The host's cgroups (those its systemd made below its own, and unless keep_own its own), once empty."""
        for cgroup in self.cgroups():
            for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            if keep_own:
                continue
            try:
                cgroup.rmdir()
            except FileNotFoundError:
                pass
            except OSError as error:
                raise LabError(f"cgroup {cgroup} still busy: {error}") from None

    def destroy(self) -> None:
        self.stop()
        if self.mounted():
            run(["umount", str(self.root)], check=False)
            if self.mounted():
                run(["umount", "-l", str(self.root)])
        network.remove_host(self.name)
        self._remove_cgroups()
        if self.dir.exists():
            if self.mounted():
                raise LabError(f"{self.root} is still mounted: not removing it")
            run(["rm", "-rf", "--one-file-system", str(self.dir)])


def authorize(home: Path, public_key: str, uid: int, gid: int) -> None:
    """The lab's key in HOME/.ssh/authorized_keys, owned by the user, as sshd requires."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid, gid)
