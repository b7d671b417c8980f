"""./kit status's account of who holds what (session_kit/status.py roles_held), from the facts its SSH call reads:
the balancer holding the floating address, the Redis primary and how far behind each replica is, and the problems
when there is not exactly one of each."""

from __future__ import annotations

import types

from deploys.keepalived import nginx_check_address
from session_kit.inventory import Node
from session_kit.status import HostStatus, roles_held


def status(name: str, roles: tuple[str, ...], **facts: str) -> HostStatus:
    return HostStatus(Node(name, f"10.0.0.{name[-1]}", {}, roles), facts, {}, {})


DEPLOYMENT = types.SimpleNamespace(vars={"lb_vip": "10.0.0.100"})


def test_one_holder_and_the_replicas_lag():
    lines, problems = roles_held(
        DEPLOYMENT,
        [
            status("lab1", ("lb", "redis"), holds_vip="no", redis_role="master", redis_offset="5000"),
            status("lab2", ("lb", "redis"), holds_vip="yes", redis_role="slave", redis_offset="4800", redis_link="up"),
            status("lab3", ("redis",), redis_role="slave", redis_offset="5000", redis_link="up"),
        ],
    )
    assert lines == [
        "floating address 10.0.0.100: held by lab2",
        "redis: primary lab1; replicas lab2 (200 bytes behind), lab3 (0 bytes behind)",
    ]
    assert problems == []


def test_no_holder_two_primaries_and_a_broken_link_are_problems():
    _, problems = roles_held(
        DEPLOYMENT,
        [
            status("lab1", ("lb", "redis"), holds_vip="no", redis_role="master", redis_offset="10"),
            status("lab2", ("lb", "redis"), holds_vip="no", redis_role="master", redis_offset="10"),
            status("lab3", ("redis",), redis_role="slave", redis_offset="0", redis_link="down"),
        ],
    )
    assert problems == [
        "the floating address 10.0.0.100 is held by 0 balancers, not one",
        "redis: 2 primaries, not one",
        "lab3: its Redis replica's link to the primary is down",
    ]


def test_without_a_floating_address_nothing_is_said_of_it():
    lines, problems = roles_held(types.SimpleNamespace(vars={}), [status("lab1", ("lb",))])
    assert lines == [] and problems == []


def test_the_nginx_check_reaches_the_listener():
    assert nginx_check_address("0.0.0.0:80") == ("127.0.0.1", "80")
    assert nginx_check_address("10.0.1.10:8080") == ("10.0.1.10", "8080")
