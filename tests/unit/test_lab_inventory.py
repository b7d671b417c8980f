"""The lab described as an inventory: in the servers shape, inventories/example.py's groups and data on the lab's
hosts, with only what the lab alone knows replaced (no lab needed: the description is data)."""

from __future__ import annotations

import pytest

from lab.inventory import EXAMPLE, LAB_OWNED, example_groups, example_hosts, roles, servers_groups
from lab.sh import LabError

DESCRIBED = {
    "shape": "servers",
    "user": "deploy",
    "ssh_key": "/lab/ssh/id_ed25519",
    "known_hosts": "/lab/ssh/known_hosts",
}


def lab_hosts(count: int) -> list[dict]:
    return [{"name": f"lab{i}", "ip": f"10.213.0.{10 + i}"} for i in range(1, count + 1)]


def test_the_servers_shape_is_the_example_on_the_labs_hosts():
    example = example_groups()
    hosts = lab_hosts(len(example_hosts()))
    groups = servers_groups(DESCRIBED, hosts, "lab")
    assert list(groups) == list(example) == ["lb", "app", "redis", "db"]
    for role, entries in example.items():
        assert len(groups[role]) == len(entries) and entries, role
        for (lab_name, data), (_name, written) in zip(groups[role], entries):
            ip = next(h["ip"] for h in hosts if h["name"] == lab_name)
            assert data["ssh_hostname"] == data["private_ip"] == ip
            assert data["ssh_key"] == DESCRIBED["ssh_key"] and data["inventory_name"] == "lab"
            # everything else the example says of its host, as written: the deploy user and sudo among it
            kept = {k: v for k, v in written.items() if k not in LAB_OWNED}
            assert {k: data[k] for k in kept} == kept and data["ssh_user"] == "deploy" and data["_sudo"] is True
    names = [name for entries in groups.values() for name, _ in entries]
    assert names == [h["name"] for h in hosts], "a host per role, in the example's order"


def test_a_lab_not_made_as_servers_is_refused_with_the_command_to_run():
    with pytest.raises(LabError, match=r"names 6: python -m lab up --servers"):
        servers_groups(DESCRIBED, lab_hosts(4), "lab")


def test_the_labs_own_shape_is_one_host_for_the_balancer_and_stores():
    assert roles(["lab1", "lab2", "lab3", "lab4"]) == {
        "lb": ["lab1"],
        "app": ["lab2", "lab3", "lab4"],
        "redis": ["lab1"],
        "db": ["lab1"],
    }


def test_example_is_read_as_written(tmp_path):
    example = tmp_path / "example.py"
    example.write_text('_s = {"ssh_user": "admin", "_sudo": True}\nlb = [("a", _s)]\napp = ["b", ("c", _s)]\n')
    assert example_groups(example) == {
        "lb": [("a", {"ssh_user": "admin", "_sudo": True})],
        "app": [("b", {}), ("c", {"ssh_user": "admin", "_sudo": True})],
        "redis": [],
        "db": [],
    }
    assert example_hosts(example) == ["a", "b", "c"] and EXAMPLE.name == "example.py"
