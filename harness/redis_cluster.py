"""A real Redis Cluster on loopback for the tests: 6 redis-server processes (3 primaries, 3 replicas) from the Debian
package, each in its own directory under one temporary directory, on free ports, with a password; optionally an ACL
user on every node. It can kill a primary and wait for its replica to take over, and move a slot between primaries.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .servers import _stop, free_port, redis_settings, wait_until


class RedisCluster:
    def __init__(
        self,
        password: str = "test-redis-password",
        primaries: int = 3,
        node_timeout_ms: int = 1000,
        acl_user: tuple[str, str, str] | None = None,
    ):
        """acl_user: (name, password, rules) set on every node, e.g. ("app", "pw", "~session:* +@all")."""
        self.password, self.node_timeout_ms, self.acl_user = password, node_timeout_ms, acl_user
        self.ports = [free_port() for _ in range(primaries * 2)]
        # The cluster bus port is PORT + 10000 unless set: past 55535 that is no port at all, so each has its own.
        self.bus_ports = {port: free_port() for port in self.ports}
        self.dir = Path(tempfile.mkdtemp(prefix="kit-redis-cluster-"))
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def seeds(self) -> str:
        """REDIS_CLUSTER_NODES: every node (the app needs only one that answers)."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def url(self, user: str = "", password: str | None = None) -> str:
        """REDIS_URL for the app: the user and password (host and port are the first seed's, unused)."""
        return f"redis://{user}:{password or self.password}@127.0.0.1:{self.ports[0]}/0"

    def _start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--dir",
                str(node_dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-port",
                str(self.bus_ports[port]),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                *redis_settings(self.password),
                "--repl-diskless-sync-delay",
                "0",
            ],  # a replica syncs at once, not after the default 5 s
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 30) -> RedisCluster:
        try:
            return self._start(timeout)
        except BaseException:
            self.destroy()
            raise

    def _start(self, timeout: float) -> RedisCluster:
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            wait_until(lambda port=port: self.cli(port, "PING") == "PONG", 10, f"redis cluster node {port}")
        if self.acl_user:
            name, password, rules = self.acl_user
            for port in self.ports:
                assert self.cli(port, "ACL", "SETUSER", name, "reset", "on", f">{password}", *rules.split()) == "OK"
        created = subprocess.run(
            [
                "redis-cli",
                "--no-auth-warning",
                "-a",
                self.password,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        self.wait_ok(timeout)

        # Every replica known to the cluster and synced with its primary: a failover needs one that is up to date.
        def replicas_up() -> bool:
            replicas = self.replica_ports()
            return len(replicas) == len(self.ports) // 2 and all(
                "master_link_status:up" in self.cli(port, "INFO", "replication") for port in replicas
            )

        wait_until(replicas_up, timeout, "the cluster's replicas", interval=0.1)
        return self

    def cli(self, port: int, *args: str, timeout: float = 10) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(port), "--no-auth-warning", "-a", self.password, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.stdout.strip()

    def alive(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def nodes(self, port: int | None = None) -> list[dict]:
        """CLUSTER NODES as seen by one live node: id, port, role, primary's id, slots."""
        lines = self.cli(port or self.alive()[0], "CLUSTER", "NODES").splitlines()
        result = []
        for line in lines:
            fields = line.split()
            result.append(
                {
                    "id": fields[0],
                    "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                    "flags": fields[2].split(","),
                    "primary": fields[3],
                    "slots": fields[8:],
                }
            )
        return result

    def primary_ports(self) -> list[int]:
        return sorted(n["port"] for n in self.nodes() if "master" in n["flags"] and "fail" not in n["flags"])

    def replica_ports(self) -> list[int]:
        return sorted(n["port"] for n in self.nodes() if "slave" in n["flags"])

    def node_id(self, port: int) -> str:
        return self.cli(port, "CLUSTER", "MYID")

    def slot_owner(self, slot: int) -> int:
        """The port of the primary serving `slot`, as a live node sees it."""
        for entry in self._slots():
            if entry[0] <= slot <= entry[1]:
                return entry[2]
        raise LookupError(f"slot {slot} is not served")

    def _slots(self) -> list[tuple[int, int, int]]:
        ranges = []
        for n in self.nodes():
            if "master" not in n["flags"] or "fail" in n["flags"]:
                continue
            for item in n["slots"]:
                if item.startswith("["):  # a slot being migrated: [slot->-id] / [slot-<-id]
                    continue
                low, _, high = item.partition("-")
                ranges.append((int(low), int(high or low), n["port"]))
        return ranges

    def keyslot(self, key: str) -> int:
        return int(self.cli(self.alive()[0], "CLUSTER", "KEYSLOT", key))

    def state_ok(self, port: int) -> bool:
        return "cluster_state:ok" in self.cli(port, "CLUSTER", "INFO", timeout=3)

    def wait_ok(self, timeout: float = 30) -> None:
        """Every live node reports cluster_state:ok and sees every slot served by a live primary."""

        def ok() -> bool:
            return (
                all(self.state_ok(port) for port in self.alive())
                and sum(high - low + 1 for low, high, _ in self._slots()) == 16384
            )

        wait_until(ok, timeout, "the redis cluster", interval=0.1)

    def kill(self, port: int) -> None:
        """A crash: SIGKILL, nothing saved, no goodbye to the other nodes."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_failover(self, dead: int, timeout: float = 30) -> int:
        """Until a replica of the dead primary has taken over its slots and the cluster is ok again; its port."""
        replicas = {n["port"] for n in self.nodes() if n["primary"] == self.node_id_of(dead)}
        promoted: list[int] = []

        def done() -> bool:
            up = [n["port"] for n in self.nodes() if "master" in n["flags"] and n["port"] in replicas]
            promoted[:] = up
            return bool(up) and all(self.state_ok(port) for port in self.alive())

        wait_until(done, timeout, f"the failover of the primary on port {dead}", interval=0.1)
        return promoted[0]

    def node_id_of(self, port: int) -> str:
        return next(n["id"] for n in self.nodes() if n["port"] == port)

    def move_slot(self, slot: int, target: int, keys_first: bool = True, finish: bool = True) -> None:
        """Move a slot from its primary to `target` as redis-cli --cluster reshard does: mark it IMPORTING on the
        target and MIGRATING on the source, MIGRATE its keys, then give it to the target on every primary.
        finish=False stops after the keys moved (the source then answers ASK for them); call finish_move()."""
        source = self.slot_owner(slot)
        assert source != target
        source_id, target_id = self.node_id(source), self.node_id(target)
        assert self.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id) == "OK"
        assert self.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id) == "OK"
        if keys_first:
            while keys := self.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
                moved = self.cli(
                    source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "AUTH", self.password, "KEYS", *keys
                )
                assert moved == "OK", moved
        if finish:
            self.finish_move(slot, target)

    def finish_move(self, slot: int, target: int) -> None:
        target_id = self.node_id(target)
        for port in [target] + [p for p in self.primary_ports() if p != target]:
            assert self.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id) == "OK"

    def dbsize(self, port: int) -> int:
        return int(self.cli(port, "DBSIZE"))

    def destroy(self) -> None:
        for proc in self.procs.values():
            _stop(proc, signal.SIGKILL, timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
