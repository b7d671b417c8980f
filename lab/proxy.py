"""The hosts' only way to packages: a private apt-cacher-ng on the bridge address, forwarding to this machine's
own mirror. Its cache lives beside the image, so a second lab installs packages without downloading them again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from . import config
from .sh import LabError


def pid(state: config.Paths) -> int | None:
    pid_file = state.proxy / "pid"
    try:
        value = int(pid_file.read_text())
        os.kill(value, 0)
    except (OSError, ValueError):
        return None
    return value if "apt-cacher-ng" in Path(f"/proc/{value}/cmdline").read_text(errors="replace") else None


def url() -> str:
    return f"http://{config.bridge_ip()}:{config.PROXY_PORT}"


def ensure(state: config.Paths) -> bool:
    """Start the proxy unless it is running; True when it was started now."""
    if pid(state) is not None:
        return False
    conf, cache = state.proxy / "conf", state.cache / "apt-cacher-ng"
    for directory in (conf, cache, state.proxy / "log"):
        directory.mkdir(parents=True, exist_ok=True)
    os.chown(cache, *_acng_owner())
    os.chown(state.proxy / "log", *_acng_owner())
    (conf / "acng.conf").write_text(
        f"CacheDir: {cache}\nLogDir: {state.proxy / 'log'}\nSupportDir: /usr/lib/apt-cacher-ng\n"
        f"Port: {config.PROXY_PORT}\nBindAddress: {config.bridge_ip()}\nSocketPath: {state.proxy / 'socket'}\n"
        f"PidFile: {state.proxy / 'pid.acng'}\nForeGround: 1\nExThreshold: 4\nPassThroughPattern: ^$\n"
        f"FreshIndexMaxAge: {FRESH_INDEX_SECONDS}\n"
    )
    log = open(state.proxy / "log" / "stdout.log", "ab")
    proc = subprocess.Popen(
        ["apt-cacher-ng", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    (state.proxy / "pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"apt-cacher-ng exited at start: see {state.proxy / 'log'}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((str(config.bridge_ip()), config.PROXY_PORT)) == 0:
                return True
        time.sleep(0.1)
    raise LabError(f"apt-cacher-ng did not listen on {url()} within 10 s")


# How long the proxy serves an index file (InRelease) it fetched without asking the mirror again (the default, 27 s,
# makes nearly every host's `apt-get update` a refresh). Refreshes of one file at one instant race in apt-cacher-ng
# ("Failure to move file ... out of the way"): lab/control.py updates new hosts one at a time for that reason.
FRESH_INDEX_SECONDS = 1800


def _acng_owner() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam("apt-cacher-ng")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 0, 0


def stop(state: config.Paths) -> None:
    value = pid(state)
    if value is not None:
        os.kill(value, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(value, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.kill(value, signal.SIGKILL)
    (state.proxy / "pid").unlink(missing_ok=True)
