"""Real servers on loopback for the tests and the benchmarks: Redis, Redis Sentinel, PostgreSQL, app nodes (Nginx:
nginx.py; Redis Cluster: redis_cluster.py).

Each runs from the Debian packages' binaries as a child process, in its own temporary directory, on a free port,
and is stopped (and its directory removed) by stop(). Nothing here is a fake.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now, and never one this run handed out before (two picks before either binds could collide)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("no fresh free port in 100 tries")


def wait_until(check, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as error:  # the server is not up yet: any error means "try again"
            last = error
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout} s (last error: {last})")


def port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def redis_settings(password: str) -> list[str]:
    """redis-server's settings for every Redis here: on loopback, a password (its replicas' too), nothing on disk."""
    return [
        "--bind",
        "127.0.0.1",
        "--requirepass",
        password,
        "--masterauth",
        password,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RedisServer:
    """redis-server with a password; keeps its data directory across stop()/start() so a restart keeps sessions."""

    def __init__(
        self,
        password: str = "test-redis-password",
        port: int | None = None,
        extra: tuple[str, ...] = (),
        parent: str | None = None,
    ):
        """extra: more redis-server settings (they override redis_settings'); parent: where its data directory is
        made (default: the system's temporary directory)."""
        self.password, self.port, self.extra = password, port or free_port(), extra
        self.dir = Path(tempfile.mkdtemp(prefix="kit-redis-", dir=parent))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                *redis_settings(self.password),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.cli("PING") == "PONG", 10, f"redis on port {self.port}")
        return self

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", self.password, *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections for redis-server, which answers nothing (a hung host)."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, save: bool = True) -> None:
        """Stop the server; with save, its data is written to disk first and comes back on start()."""
        if self.proc and self.proc.poll() is None:
            self.cli("SHUTDOWN", "SAVE" if save else "NOSAVE")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                _stop(self.proc)

    def destroy(self) -> None:
        self.stop(save=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelServer:
    """redis-server in Sentinel mode, watching one master under the name `master_name`."""

    def __init__(self, master: RedisServer, master_name: str = "mymaster"):
        self.master, self.master_name, self.port = master, master_name, free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kit-sentinel-"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> SentinelServer:
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel auth-pass {self.master_name} {self.master.password}\n"
            f"sentinel down-after-milliseconds {self.master_name} 1000\n"
            f"sentinel failover-timeout {self.master_name} 5000\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: port_open(self.port), 10, f"sentinel on port {self.port}")
        return self

    def cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)
        return result.stdout.strip()

    def destroy(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL 15 cluster of its own (initdb), password authentication, on loopback."""

    user, password, database = "kit", "test-postgres-password", "sessions"

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kit-pg-"))
        self.data = self.dir / "data"
        # PostgreSQL refuses to run as root: run it as the postgres user the Debian package creates.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        self.initialised = False
        self.database_created = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=60, cwd=self.dir)

    def start(self) -> PostgresServer:
        if not self.initialised:
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password + "\n")
            if self.as_user:
                shutil.chown(pwfile, "postgres", "postgres")
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "-E",
                "UTF8",
            )
            pwfile.unlink()
            # TLS as the kit's PostgreSQL has it (the app's DATABASE_URL says sslmode=require): a self-signed pair.
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    str(self.dir / "server.key"),
                    "-out",
                    str(self.dir / "server.crt"),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            (self.dir / "server.key").chmod(0o600)
            if self.as_user:
                for name in ("server.key", "server.crt"):
                    shutil.chown(self.dir / name, "postgres", "postgres")
            self.initialised = True
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.dir / "log"),
            "start",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200 "
            f"-c ssl=on -c ssl_cert_file={self.dir}/server.crt -c ssl_key_file={self.dir}/server.key",
        )
        if not self.database_created:
            env = {**os.environ, "PGPASSWORD": self.password}
            subprocess.run(
                [
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    "postgres",
                    "-c",
                    f"CREATE DATABASE {self.database}",
                ],
                check=True,
                capture_output=True,
                env=env,
            )
            self.database_created = True
        return self

    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def children(self) -> list[int]:
        """Every process the postmaster started (backends, checkpointer, walwriter, ...)."""
        found = subprocess.run(["pgrep", "-P", str(self.postmaster())], capture_output=True, text=True).stdout
        return [int(pid) for pid in found.split()]

    def freeze(self) -> None:
        """SIGSTOP to the whole server: the kernel still accepts connections and acknowledges what is sent on them,
        but nothing answers (a hung host, a frozen VM). The postmaster first, so that it forks no backend after the
        children were listed."""
        os.kill(self.postmaster(), signal.SIGSTOP)
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(self.postmaster(), signal.SIGCONT)

    def crash(self) -> None:
        """SIGKILL to every process of the server at once (the postmaster first, so it forks nothing after): what the
        OOM killer or a segfault leaves. start() then runs PostgreSQL's crash recovery."""
        children = self.children()
        os.kill(self.postmaster(), signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.port), 10, f"postgres on port {self.port} gone")

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class AppNode:
    """One `python -m sample_app` process."""

    def __init__(self, name: str, env: dict[str, str], port: int | None = None, host: str = "127.0.0.1"):
        self.name, self.port, self.host = name, port or free_port(), host
        self.env = {
            **os.environ,
            "NODE_NAME": name,
            "APP_HOST": host,
            "APP_PORT": str(self.port),
            "LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
            # test clients keep idle connections open: a stop would wait the whole drain for them
            "DRAIN_SECONDS": "1",
            **env,
        }
        self.log = Path(tempfile.mkstemp(prefix=f"kit-app-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, wait: bool = True) -> AppNode:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sample_app"], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited: {self.log.read_text()[-2000:]}")
            return requests.get(self.url + "/ping", timeout=1).status_code == 200

        wait_until(up, timeout, f"app node {self.name}")

    def stop(self, timeout: float = 25) -> None:
        """SIGTERM, and wait: a draining node may take DRAIN_SECONDS plus its workers' margin (sample_app/serve.py)."""
        _stop(self.proc, timeout=timeout)

    def kill(self) -> None:
        """A crash: SIGKILL, no drain (a stopping node waits for its clients' idle connections to close)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


class KitRedis:
    """redis-server with the kit's own redis.conf (templates/etc/redis/redis.conf.j2 as the deploy renders it: its
    ACL users, its persistence), on loopback; only what a test process cannot use is overridden (systemd
    supervision, the Debian paths). url is the app's: its ACL user. Data stays across kill() and start()."""

    def __init__(self, **settings: Any):
        from pyinfra.api.util import get_template

        from deploys.redis import acl
        from session_kit.defaults import ALL_DEFAULTS

        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kit-redis-conf-"))
        self.password, self.admin_password = "app-password", "admin-password"
        secrets = {
            "redis_password": self.password,
            "redis_admin_password": self.admin_password,
            "redis_replication_password": "replication-password",
        }
        values = {**{k: v for k, v in ALL_DEFAULTS.items() if k.startswith("redis_")}, **settings}
        self.user = values["redis_user"]
        template = get_template(str(ROOT / "templates/etc/redis/redis.conf.j2"))
        (self.dir / "redis.conf").write_text(
            template.render(
                private_ip="127.0.0.1",
                sentinel=False,
                replication=False,
                cluster=False,
                **acl(secrets),
                port=self.port,
                pidfile=self.dir / "pid",
                dbfilename="dump.rdb",
                appenddirname="appendonlydir",
                **values,
            )
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.user}:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> KitRedis:
        self.proc = subprocess.Popen(
            ["redis-server", str(self.dir / "redis.conf"), "--supervised", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.proc.poll() is not None or self.cli("PING") == "PONG", 15, f"redis on {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server refused the kit's redis.conf ({self.dir / 'redis.conf'})")
        return self

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--no-auth-warning", "--user", "admin", "-a", self.admin_password]
            + list(args),
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip()

    def kill(self) -> None:
        """SIGKILL: nothing saved on the way down, as the OOM killer or a segfault leaves it."""
        _stop(self.proc, signal.SIGKILL)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
