"""The report's quick form on the lab, for every strategy: it runs, every step succeeds, and its checks pass (the
structure, the plots, and every figure in it traced to a measurement of this run: reporting/check.py)."""

from __future__ import annotations

import sys

import pytest

from reporting.check import problems
from tests.e2e.test_deploy import run

pytestmark = pytest.mark.lab


def test_quick_report_on_the_lab(lab, tmp_path):
    out = tmp_path / "report"
    result = run(sys.executable, "-m", "reporting", "--quick", "--out", str(out), timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "0 steps failed" in result.stdout, result.stdout[-3000:]
    assert problems(out, out / "results") == []
    markdown = (out / "report.md").read_text()
    for strategy in ("cookie", "sticky", "database", "replication", "redis", "token"):
        assert strategy in markdown
    print(result.stdout.strip().splitlines()[-1])
