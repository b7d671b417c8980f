"""The lab, for real: hosts come up with systemd and their own identity, reach each other and the apt proxy, grow,
shrink, and go away leaving nothing behind. Needs root (CI runs as root); builds the image on first use (minutes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import config, control, network

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab  # needs root: tests/conftest.py stops the run with one line when it is missing


def lab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **(env or {})},
    )


def on(host: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(config.paths().ssh_config), host, command], capture_output=True, text=True, timeout=300
    )


def machine_ids() -> dict[str, str]:
    return {h["name"]: on(h["name"], "cat /etc/machine-id").stdout.strip() for h in hosts()}


def hosts() -> list[dict]:
    return json.loads(config.paths().inventory.read_text())["hosts"]


def test_refuses_a_used_address_range_and_makes_nothing():
    before = control.leftovers(config.paths())  # a lab already up (a developer's) is not this test's to judge
    result = lab("up", "--hosts", "1", env={"LAB_SUBNET": "127.0.0.0/24"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.0/24" in lines[0] and "LAB_SUBNET" in lines[0]
    assert control.leftovers(config.paths()) == before, "the refused `up` made something"


def test_refuses_to_run_without_root(monkeypatch, capsys):
    # (The venv's interpreter lives under /root, so a real unprivileged user could not even start it here.)
    from lab.__main__ import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for command in (["up"], ["down"]):
        assert main(command) == 1
        assert capsys.readouterr().err.strip().startswith("lab: must run as root")


@pytest.fixture(scope="module")
def three_hosts():
    result = lab("up", "--hosts", "3")
    assert result.returncode == 0, result.stderr
    yield result
    down = lab("down")
    assert down.returncode == 0, down.stderr


def test_up_shows_progress_and_timings(three_hosts):
    assert re.search(r"\[\s*[\d.]+s\] image: done in [\d.]+s", three_hosts.stderr)
    assert re.search(r"lab up: 3 host\(s\) running", three_hosts.stdout)


def test_each_host_runs_systemd_with_its_own_identity(three_hosts):
    ids, keys = set(), set()
    known = config.paths().known_hosts.read_text()
    for host in hosts():
        assert on(host["name"], "systemctl is-system-running").stdout.strip() == "running"
        assert on(host["name"], "hostname").stdout.strip() == host["name"]
        assert on(host["name"], "systemctl is-active ssh").stdout.strip() == "active"
        key = on(host["name"], "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        assert key and key in known
        keys.add(key)
        ids.add(on(host["name"], "cat /etc/machine-id").stdout.strip())
        routes = on(host["name"], "ip -4 route").stdout
        assert "default" not in routes, "hosts must have no way out but the apt proxy"
    assert len(ids) == 3 and len(keys) == 3


def test_strict_host_key_checking_refuses_a_wrong_key(three_hosts, tmp_path):
    wrong = tmp_path / "known_hosts"
    first = hosts()[0]
    wrong.write_text(
        f"{first['ip']} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1c3QgYSB3cm9uZyBrZXkgZm9yIHRoZSB0ZXN0cw==\n"
    )
    result = subprocess.run(
        ["ssh", "-F", str(config.paths().ssh_config), "-o", f"UserKnownHostsFile={wrong}", first["name"], "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0


def test_hosts_reach_each_other(three_hosts):
    names = [h["name"] for h in hosts()]
    for source in names:
        for target in names:
            if source != target:
                result = on(source, f"timeout 5 bash -c 'echo > /dev/tcp/{target}/22' && echo open")
                assert result.stdout.strip() == "open", f"{source} cannot reach {target}: {result.stderr}"


def test_apt_installs_through_the_proxy(three_hosts):
    result = on("lab2", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello && hello")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Hello, world!" in result.stdout
    proxy = on("lab2", "apt-config dump | grep -i 'Acquire::http::Proxy'").stdout
    assert f"{config.bridge_ip()}:{config.PROXY_PORT}" in proxy


def test_up_again_keeps_a_healthy_lab(three_hosts):
    before = machine_ids()
    result = lab("up", "--hosts", "3")
    assert result.returncode == 0, result.stderr
    assert "(3 kept, 0 started)" in result.stdout
    assert machine_ids() == before


def test_grow_and_shrink(three_hosts):
    before = machine_ids()
    result = lab("up", "--hosts", "4")
    assert result.returncode == 0 and "(3 kept, 1 started)" in result.stdout, result.stderr
    after = machine_ids()
    assert {k: after[k] for k in before} == before and "lab4" in after
    assert on("lab4", "getent hosts lab1").stdout.split()[0] == str(config.host_ip(1))
    result = lab("up", "--hosts", "2")
    assert result.returncode == 0, result.stderr
    assert [h["name"] for h in hosts()] == ["lab1", "lab2"]
    assert not Path(f"/run/netns/{config.netns('lab3')}").exists()
    status = lab("status")
    rows = [line.split() for line in status.stdout.strip().splitlines()]
    assert [row[0] for row in rows] == ["lab1", "lab2"]
    for row in rows:
        assert row[2] == "running" and 1 < float(row[3]) < 500  # MiB


def mac_of(name: str) -> str:
    """A host's MAC, read from the machine (inside an nspawn host, sysfs shows another interface's address)."""
    link = json.loads(
        subprocess.run(
            ["ip", "-j", "-n", config.netns(name), "link", "show", "eth0"], capture_output=True, text=True, check=True
        ).stdout
    )
    return link[0]["address"]


def test_a_host_made_again_is_reachable_at_once(three_hosts):
    """A host removed and made again keeps its MAC address (lab/network.py: host_mac), so the neighbour caches of
    the machine and of the other hosts, which still hold it, stay right: with a new MAC each time, the remade host
    answered no SSH connection for 30-45 s (a scale-out drill's new node, a grown lab)."""
    assert lab("up", "--hosts", "3").returncode == 0
    on("lab2", "timeout 5 bash -c 'echo > /dev/tcp/lab3/22'")  # lab2 and the machine now cache lab3's address
    mac = mac_of("lab3")
    assert mac == network.host_mac(config.host_ip(3))
    assert lab("up", "--hosts", "2").returncode == 0
    result = lab("up", "--hosts", "3")
    assert result.returncode == 0, result.stderr
    assert mac_of("lab3") == mac
    neighbour = subprocess.run(["ip", "neigh", "show", str(config.host_ip(3))], capture_output=True, text=True)
    assert mac in neighbour.stdout or "lladdr" not in neighbour.stdout, neighbour.stdout
    # straight from a peer, with a connect timeout far below the 30 s a stale neighbour entry took
    result = on("lab2", "timeout 3 bash -c 'echo > /dev/tcp/lab3/22' && echo open")
    assert result.stdout.strip() == "open", result.stderr


def test_down_leaves_nothing(three_hosts):
    result = lab("down")
    assert result.returncode == 0, result.stderr
    assert "nothing left" in result.stdout
    assert control.leftovers(config.paths()) == []
    assert not [
        ns
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if ns.startswith(config.PREFIX)
    ]
    assert config.BRIDGE not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert "systemd-nspawn" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert lab("status").stdout.strip() == "lab: no hosts"
