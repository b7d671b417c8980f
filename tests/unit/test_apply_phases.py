"""Where an apply's time goes: drills.cluster.run_marked notes when each of pyinfra's `--> ` stage lines came (a real
child process, here a small Python script standing in for pyinfra's output), phases() turns the marks into seconds
per stage, and a command past its time is stopped with an error that says so."""

from __future__ import annotations

import sys
import time

import pytest

from drills.cluster import DrillError, phases, run_marked

SCRIPT = """
import sys, time
print("--> Loading config...", flush=True)
time.sleep(0.3)
print("\\x1b[1m--> Connecting to hosts...\\x1b[0m", flush=True)
print("    [lab1] Connected", flush=True)
time.sleep(0.6)
print("--> Beginning operation run:", flush=True)
print("oops", file=sys.stderr, flush=True)
"""


def test_each_stage_line_is_marked_and_timed():
    returncode, output, marks = run_marked([sys.executable, "-c", SCRIPT], timeout=30)
    assert returncode == 0 and "oops" in output and "[lab1] Connected" in output
    assert [name for name, _ in marks] == ["Loading config", "Connecting to hosts", "Beginning operation run", "done"]
    spent = phases(marks)
    assert list(spent) == ["start", "Loading config", "Connecting to hosts", "Beginning operation run"]
    assert 0.25 <= spent["Loading config"] < 3 and 0.5 <= spent["Connecting to hosts"] < 3
    assert abs(sum(spent.values()) - marks[-1][1]) < 0.05


def test_a_command_past_its_time_is_stopped():
    started = time.monotonic()
    with pytest.raises(DrillError, match="took more than 1"):
        run_marked([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert time.monotonic() - started < 10


def test_the_slowest_steps_are_named_with_their_slowest_host():
    from drills.cluster import slowest_steps

    lines = "\n".join(
        [
            '{"host": "lab2", "step": "Install the app into its venv", "seconds": 11.5, "ok": true}',
            '{"host": "lab3", "step": "Install the app into its venv", "seconds": 14.0, "ok": true}',
            '{"host": "lab1", "step": "Render the firewall", "seconds": 0.2, "ok": true}',
            "not json: a line cut off by a killed run",
            '{"host": "lab2", "step": "Install python3-venv and curl", "seconds": 20.25, "ok": false}',
        ]
    )
    steps = slowest_steps(lines, count=2)
    assert [(s["step"], s["host"], s["seconds"]) for s in steps] == [
        ("Install python3-venv and curl", "lab2", 20.25),
        ("Install the app into its venv", "lab3", 14.0),
    ]
