"""wrk, the load generator of the session benchmark and of the report's load: one run (one thread, `connections`
connections, `seconds` long) at one endpoint, each request carrying the next of many sessions' handles (the SESSION
cookie, or a bearer token), and its figures read from wrk's output."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

LUA = """
local handles = {%(handles)s}
local i = 0
request = function()
  i = i + 1
  local h = handles[(i %% #handles) + 1]
  return wrk.format("%(method)s", "%(path)s", {["%(header)s"] = "%(prefix)s" .. h})
end
"""
PERCENTILES = ("50", "75", "90", "99")  # what wrk --latency prints


def unit_ms(value: str) -> float:
    """One of wrk's durations ("61.30us", "2.03ms", "1.20s") in milliseconds."""
    number, unit = float(re.match(r"[\d.]+", value).group()), re.sub(r"[\d.]+", "", value)
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse(output: str) -> dict[str, Any]:
    """Requests per second, requests, answers not 2xx or 3xx, socket errors and the latency percentiles (ms)."""
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(int(n) for n in socket.groups()) if socket else 0,
        "latency_ms": {f"p{p}": unit_ms(latency[p]) for p in PERCENTILES},
    }


def run(
    url: str, method: str, path: str, handles: list[str], bearer: bool, seconds: float, connections: int = 32
) -> dict[str, Any]:
    """wrk at `method path` of `url` (no session when `handles` is empty), parsed (parse); RuntimeError with the end of
    wrk's output when it fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            LUA
            % {
                "handles": ",".join(json.dumps(h) for h in handles) or '""',
                "method": method,
                "path": path,
                "header": "Authorization" if bearer else "Cookie",
                "prefix": "Bearer " if bearer else "SESSION=",
            }
        )
    try:
        command = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", script.name, url]
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        Path(script.name).unlink()
    if result.returncode != 0 or "Requests/sec" not in result.stdout:
        raise RuntimeError(f"wrk {method} {path}: exit {result.returncode}: {(result.stderr or result.stdout)[-300:]}")
    return parse(result.stdout)
