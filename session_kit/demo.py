"""The demo: bring up the local lab, deploy a strategy, apply again (zero changes), verify, and summarise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .inventory import load
from .verification import verify_command

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = "inventories/lab.py"


def step(title: str, command: list[str], quiet: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    print(f"==> {title}", flush=True)
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, text=True, capture_output=quiet)
    took = time.monotonic() - started
    if result.returncode != 0:
        if quiet:
            sys.stdout.write(result.stdout[-4000:])
            sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"demo: {title} failed (exit {result.returncode})")
    print(f"    done in {took:.1f}s", flush=True)
    return result, took


def grand_total(output: str) -> str:
    match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if not match:
        return "no results table"
    hosts, success, error, unchanged = match.groups()
    return (
        f"{'0' if success == '-' else success} changed, {'0' if error == '-' else error} errors, "
        f"{'0' if unchanged == '-' else unchanged} unchanged"
    )


def run(strategy: str | None, down: bool) -> int:
    python = sys.executable
    pyinfra = str(Path(python).with_name("pyinfra"))
    data = ["--data", f"session_strategy={strategy}"] if strategy else []
    step("lab up (real Debian hosts: systemd-nspawn)", [python, "-m", "lab", "up"], quiet=False)
    checked, _ = step("check the inventory", [python, "-m", "session_kit", "check", INVENTORY, *data])
    print("    " + checked.stdout.strip())
    overrides = {"session_strategy": strategy} if strategy else None
    deployment = load(INVENTORY, overrides)
    first, t1 = step(
        f"deploy {deployment.strategy.name} (pyinfra)", [pyinfra, "-y", INVENTORY, "deploys/site.py", *data]
    )
    second, t2 = step("apply again (must change nothing)", [pyinfra, "-y", INVENTORY, "deploys/site.py", *data])
    with tempfile.NamedTemporaryFile(prefix="session-kit-proven-", suffix=".json") as proven_file:
        verify, t3 = step(
            "verify (testinfra over SSH, sessions over HTTPS through Nginx)",
            verify_command(INVENTORY, overrides, "--proven", proven_file.name),
        )
        proven = json.loads(Path(proven_file.name).read_text() or "[]")
    lb = deployment.lb_url
    # the self-signed certificate (relative to the kit's directory, where ./kit runs): curl trusts it with --cacert
    ca = deployment.tls_ca and (
        deployment.tls_ca.relative_to(ROOT) if deployment.tls_ca.is_relative_to(ROOT) else deployment.tls_ca
    )
    cacert = f"--cacert {ca} " if ca else ""
    apps = ", ".join(f"{n.name} ({n.ip})" for n in deployment.role("app"))
    if deployment.tls_ca:
        tls_line = (
            f"self-signed certificate of this inventory: {ca} (trust it, or "
            f"curl --cacert it); plain HTTP ({deployment.lb_http_url}) answers 308 to HTTPS"
        )
    elif deployment.tls_certificate:
        tls_line = f"the inventory's certificate {deployment.tls_certificate}; plain HTTP answers 308 to HTTPS"
    else:
        tls_line = "off (lb_tls = False): plain HTTP"
    summary = re.sub(r"\s+in [\d.]+s.*$", "", verify.stdout.strip().splitlines()[-1].strip("= "))
    print(f"""
session-kit demo: proven on {len(deployment.nodes)} real hosts
  strategy        {deployment.strategy.name}, Nginx balancing {deployment.lb_method}
  load balancer   {lb}   (open it in a browser on this machine, or: \
curl {cacert}-X POST {lb}/login -d '{{"username":"me"}}')
  app nodes       {apps}
  TLS             {tls_line}
  first apply     {grand_total(first.stdout + first.stderr)} in {t1:.0f}s
  second apply    {grand_total(second.stdout + second.stderr)} in {t2:.0f}s
  verification    {summary} in {t3:.0f}s: services and private sockets, and, measured through Nginx:
{chr(10).join("                  - " + line for line in proven)}
  try another     ./kit demo --strategy token      (cookie, sticky, database, replication, redis, token)
  by hand         ssh -F /var/lib/session-kit-lab/ssh/config lab2
  take it down    ./kit lab down""")
    if down:
        step("lab down", [python, "-m", "lab", "down"], quiet=False)
    return 0
