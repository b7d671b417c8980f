"""GET /: a small page for a person, to watch requests move between nodes."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>session-kit: {strategy}</title>
<style>body{{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}} td{{padding:.2em 1em}}
button{{margin-right:.5em}} #log{{font:13px monospace;white-space:pre}}</style></head>
<body><h1>session-kit</h1>
<p>Strategy <b>{strategy}</b>; this page was served by <b>{node}</b>.</p>
<table><tr><td>served by</td><td id="node">{node}</td></tr>
<tr><td>user</td><td id="user">-</td></tr><tr><td>counter</td><td id="counter">-</td></tr></table>
<p><input id="name" value="alice" size="12">
<button onclick="login()">Log in</button><button onclick="bump()">Increment</button>
<button onclick="logout()">Log out</button><button onclick="show()">Refresh</button></p>
<div id="log"></div>
<script>
const BEARER = {bearer};
function headers() {{
  const h = {{"Content-Type": "application/json"}};
  const t = sessionStorage.getItem("token");
  if (BEARER && t) h["Authorization"] = "Bearer " + t;
  return h;
}}
async function call(method, path, body) {{
  const r = await fetch(path, {{method, headers: headers(), body: body && JSON.stringify(body)}});
  const data = await r.json();
  document.getElementById("node").textContent = r.headers.get("X-Served-By");
  document.getElementById("log").textContent =
    method + " " + path + " -> " + r.status + " from " + r.headers.get("X-Served-By") + "\\n" +
    document.getElementById("log").textContent;
  return [r.status, data];
}}
async function show() {{
  const [status, s] = await call("GET", "/session");
  document.getElementById("user").textContent = status === 200 ? s.user : "(no session)";
  document.getElementById("counter").textContent = status === 200 ? s.counter : "-";
}}
async function login() {{
  const [, s] = await call("POST", "/login", {{username: document.getElementById("name").value}});
  if (BEARER && s.token) sessionStorage.setItem("token", s.token);
  show();
}}
async function bump() {{ await call("POST", "/session/counter"); show(); }}
async function logout() {{ await call("POST", "/logout"); sessionStorage.removeItem("token"); show(); }}
show();
</script></body></html>
"""


def render(node: str, strategy: str, bearer: bool) -> str:
    return _PAGE.format(node=html.escape(node), strategy=html.escape(strategy), bearer="true" if bearer else "false")
