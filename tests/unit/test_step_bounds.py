"""A stuck step never hangs a deploy: each remote command of a step is bounded on the host itself, and a step past
its bound fails with one line naming the host and the step. Real pyinfra runs against this machine (@local)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deploys.cluster import APT_BOUND, APT_TIMEOUT, STEP_BOUND, STEP_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def run_deploy(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess, float]:
    deploy = tmp_path / "deploy.py"
    deploy.write_text(
        "from pyinfra import state\nfrom pyinfra.api import deploy\n"
        "from pyinfra.operations import server\n"
        "from deploys.cluster import bounded, report_bounds\nreport_bounds(state)\n" + body
    )
    started = time.monotonic()
    result = subprocess.run(
        [PYINFRA, "-y", "@local", str(deploy)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    return result, time.monotonic() - started


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def one_line(output: str, host: str, step: str, bound: int) -> list[str]:
    pattern = rf"session-kit: {re.escape(host)}: step '{re.escape(step)}' ran past its bound of {bound} s"
    return [line for line in output.splitlines() if re.search(pattern, line)]


def test_a_step_past_its_bound_is_stopped_on_the_host_and_named(tmp_path):
    pidfile = tmp_path / "pid"
    result, took = run_deploy(
        tmp_path,
        (
            f"server.shell(name='Hang like a stuck apt-get', commands=['echo $$ > {pidfile}; exec sleep 300'],"
            " **bounded(2))\n"
        ),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert took < 60, f"the run took {took:.0f}s"
    lines = one_line(output, "@local", "Hang like a stuck apt-get", 2)
    assert len(lines) == 1 and lines[0].endswith("and was stopped"), output
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), "the stuck command still runs on the host after its bound"


def test_every_operation_of_a_bounded_deploy_gets_the_bound(tmp_path):
    """How nginx.py, redis.py and postgres.py bound every step: @bounded_deploy(name, data_defaults)."""
    result, took = run_deploy(
        tmp_path,
        (
            "from deploys.cluster import bounded_deploy\n"
            "@bounded_deploy('Bounded component', data_defaults={'some_default': 1}, bound=bounded(2))\n"
            "def component():\n"
            "    server.shell(name='Fast step', commands=['true'])\n"
            "    server.shell(name='Slow step', commands=['sleep 300'])\n"
            "component()\n"
        ),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and took < 60, output
    assert len(one_line(output, "@local", "Bounded component | Slow step", 2)) == 1, output
    assert not one_line(output, "@local", "Bounded component | Fast step", 2)


def test_pyinfra_timeout_alone_leaves_the_command_running(tmp_path):
    """Why bounded() also bounds the command on the host: pyinfra's _timeout only stops waiting for it. Should a
    pyinfra release start stopping the command itself, this fails, and bounded() could drop its host side."""
    pidfile = tmp_path / "pid"
    result, took = run_deploy(
        tmp_path,
        (f"server.shell(name='Only pyinfra waits', commands=['echo $$ > {pidfile}; exec sleep 60'], _timeout=2)\n"),
    )
    pid = int(pidfile.read_text())
    try:
        output = result.stdout + result.stderr
        assert result.returncode != 0 and took < 40, output
        lines = one_line(output, "@local", "Only pyinfra waits", 2)
        assert len(lines) == 1 and lines[0].endswith("pyinfra stopped waiting for it"), output
        assert alive(pid)
    finally:
        if alive(pid):
            os.kill(pid, 9)


def test_the_bounds_fit_their_steps():
    # systemctl waits up to 90 s for a service to stop (systemd's default) and then starts it
    assert STEP_TIMEOUT >= 2 * 90 and STEP_BOUND["_shell_executable"] == f"timeout -k 10 {STEP_TIMEOUT} sh"
    # an apt step may download for a while, and is tried twice: both tries fit in the e2e test's 15 minutes
    assert APT_BOUND["_retries"] == 1 and 2 * (APT_BOUND["_timeout"] + APT_BOUND["_retry_delay"]) < 15 * 60
    assert APT_TIMEOUT > STEP_TIMEOUT


def test_operations_the_deploys_use_work_under_the_bound(tmp_path, request):
    """The host-side bound wraps the shell pyinfra runs: files, su (as the postgres steps use) and apt's facts still
    work, and a second run changes nothing."""
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user on this machine (./kit setup installs PostgreSQL)")
    target = Path(tempfile.mkdtemp(prefix="kit-bounds-"))  # pytest's tmp_path is not open to the postgres user
    target.chmod(0o777)
    request.addfinalizer(lambda: shutil.rmtree(target, ignore_errors=True))
    body = (
        "import io\nfrom pyinfra.operations import apt, files\n"
        "from deploys.cluster import bounded_deploy\n"
        "@bounded_deploy('Bounded component', data_defaults={}, bound=bounded(30))\n"
        "def component():\n"
        f"    files.put(name='A file', src=io.StringIO('x\\n'), dest='{target}/file', mode='640')\n"
        f"    server.shell(name='As postgres', commands=['test -e {target}/who || whoami > {target}/who'],"
        " _su_user='postgres')\n"
        "    apt.packages(name='Installed already', packages=['coreutils'])\n"
        "component()\n"
    )
    for _ in range(2):
        result, _took = run_deploy(tmp_path, body)
        assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "file").read_text() == "x\n" and (target / "who").read_text() == "postgres\n"
