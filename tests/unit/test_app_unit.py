"""The app's systemd unit as rendered: systemd's own security analysis scores it 2.0 or lower ("OK"). The lab's
verification checks the same score on the running hosts, with the app serving under it."""

from __future__ import annotations

import re
import shutil
import subprocess

import jinja2
import pytest

from deploys.cluster import template

GOAL = 2.0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_rendered_unit_scores_ok(tmp_path):
    unit = tmp_path / "session-kit-app.service"
    source = open(template("etc/systemd/system/session-kit-app.service")).read()
    unit.write_text(
        jinja2.Template(source).render(strategy="redis", app_user="session-kit", app_dir="/opt/session-kit")
    )
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for session-kit-app\.service:\s*([\d.]+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr[-500:]
    assert float(match.group(1)) <= GOAL, result.stdout
