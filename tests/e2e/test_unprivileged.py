"""Deploying to servers needs neither root nor the lab on the controller: a local user without privileges, with a
copy of the kit, applies a plain inventory file to the lab's hosts, verifies the deployment and reads its status,
through `./kit` as the docs tell a user to.

The user's inventory is the lab's, written out the way a user writes theirs: host names, addresses, an SSH key and a
known_hosts file of the user's own (nothing under the lab's root-only directory). Its secrets are the lab's, copied
as a team member would have them. Its venv is made by Debian's python3 with a copy of the kit's installed packages:
installing them again from an index would send a test's traffic off this machine (what Debian's older 3.11 needs
besides comes from the wheelhouse a deploy builds). The app's wheelhouse
is the root run's, when one for these sources is built already (the same bytes; building it needs no root either).
"""

from __future__ import annotations

import os
import pprint
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from deploys import wheelhouse
from drills.cluster import ROOT
from lab.inventory import groups
from tests.e2e.test_deploy import totals

pytestmark = pytest.mark.lab

USER = "kit-controller"
STRATEGY = "redis"


def as_user(command: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """A login shell of USER: its own HOME and PATH, none of root's environment."""
    return subprocess.run(
        ["runuser", "-l", USER, "-c", f"cd {cwd} && {command}"], capture_output=True, text=True, timeout=timeout
    )


def copy_tree(source: Path, target: Path) -> None:
    """The kit as a clone has it: tracked files and new ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=source, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        path = source / name
        if path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)


def user_venv(kit: Path) -> None:
    """Debian's python3 (not root's), with a copy of the kit's installed packages: the user's own, wherever root's
    venv lies. The copy leaves out the editable install's pointer to root's tree: the user's tree is the kit."""
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(kit / ".venv")], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copytree(
        sysconfig.get_paths()["purelib"],
        kit / ".venv" / "lib" / version / "site-packages",
        symlinks=True,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__editable__*", "session_kit-*.dist-info", "__pycache__"),
    )
    # Debian 12's python3 is 3.11.2, which needs async-timeout where root's newer 3.11 does not (redis-py's marker):
    # the wheelhouse a deploy to Debian 12 builds holds it (deploys/wheelhouse.py, MARKER_EXTRAS).
    wheels = wheelhouse.build(version.removeprefix("python"), os.uname().machine)
    subprocess.run(
        [kit / ".venv" / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels]
        + ["--disable-pip-version-check", "async-timeout"],
        check=True,
    )
    pyinfra = kit / ".venv" / "bin" / "pyinfra"
    pyinfra.write_text(f"#!{kit}/.venv/bin/python\nimport sys\nfrom pyinfra_cli.main import main\nsys.exit(main())\n")
    pyinfra.chmod(0o755)
    shutil.copy(kit / "pyproject.toml", kit / ".venv" / ".installed-pyproject")  # ./kit's "installed already"


def user_inventory(kit: Path, ssh_dir: Path) -> Path:
    """The lab's groups as a plain inventory file, reached with the user's own key and known_hosts."""
    written = {}
    for role, entries in groups("lab").items():
        written[role] = []
        for name, data in entries:
            for key, copy in (("ssh_key", "id_lab"), ("ssh_known_hosts_file", "known_hosts")):
                if not (ssh_dir / copy).exists():
                    shutil.copy(data[key], ssh_dir / copy)
                data = {**data, key: str(ssh_dir / copy)}
            written[role].append((name, data))
    path = kit / "inventories" / "mine.py"
    lines = ['"""The lab\'s hosts, as a user writes an inventory of their own servers."""', ""]
    lines += [f"{role} = {pprint.pformat(entries, width=118)}" for role, entries in written.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def user_kit(lab):
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    home = Path(pwd.getpwnam(USER).pw_dir)
    kit, ssh_dir = home / "session-kit", home / ".ssh"
    shutil.rmtree(kit, ignore_errors=True)
    kit.mkdir()
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    copy_tree(ROOT, kit)
    user_venv(kit)
    inventory = user_inventory(kit, ssh_dir)
    (kit / "secrets").mkdir(mode=0o700)
    for secret in (ROOT / "secrets").glob("lab*"):
        shutil.copy2(secret, kit / "secrets" / secret.name)
    for built in (ROOT / "build").glob("wheelhouse-*"):
        if (built / ".complete").exists():
            shutil.copytree(built, kit / "build" / built.name)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home)], check=True)
    yield kit, inventory.relative_to(kit)
    subprocess.run(["pkill", "-u", USER], capture_output=True)
    subprocess.run(["userdel", "--remove", USER], capture_output=True)


def test_the_user_has_no_privileges(user_kit):
    kit, _ = user_kit
    result = as_user("id -u && sudo -n true", kit)
    assert result.stdout.split()[0] != "0", result.stdout
    assert result.returncode != 0, "the user may become root through sudo"


def test_deploy_verify_reapply_and_status_without_root(user_kit):
    kit, inventory = user_kit
    first = as_user(f"./kit deploy {inventory} --data session_strategy={STRATEGY}", kit)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert totals(first)["errors"] == 0
    assert "installing Debian packages" not in first.stderr, "./kit deploy tried apt"
    verify = as_user(f"./kit verify {inventory} --strategy {STRATEGY} -q -p no:cacheprovider", kit)
    assert verify.returncode == 0, f"verification failed:\n{verify.stdout[-6000:]}{verify.stderr[-2000:]}"
    assert re.search(r"\d+ passed", verify.stdout)
    second = as_user(f"./kit deploy {inventory} --data session_strategy={STRATEGY}", kit)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    counts = totals(second)
    assert counts["changed"] == 0 and counts["errors"] == 0, counts
    status = as_user(f"./kit status {inventory} --data session_strategy={STRATEGY}", kit, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.strip().endswith("status: healthy"), status.stdout


def test_the_lab_commands_say_they_need_root(user_kit):
    kit, _ = user_kit
    result = as_user("./kit lab status", kit, timeout=60)
    assert result.returncode == 2
    assert "needs root on Debian 12" in result.stderr and "./kit deploy" in result.stderr, result.stderr
