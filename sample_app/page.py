"""GET /: a small page for a person, to watch one session travel between the app nodes.

It shows the strategy, the session (user and counter, read from the server, so a reload shows the same state), which
node served each of the recent requests (X-Served-By), and how many different nodes have served this session. The
token strategy has no cookie: the page keeps the token in sessionStorage and sends it as a bearer header. One
self-contained page: no external resources."""

from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>session-kit: __STRATEGY_HTML__ on __NODE_HTML__</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;max-width:46em;margin:1.5em auto;padding:0 1em;color:#1d1d1f}
h1{font-size:1.4em;margin:0 0 .2em}.sub{color:#555;margin:0 0 1em}
.tag{display:inline-block;padding:.05em .5em;border-radius:.6em;font-weight:600;color:#fff;background:#444}
.card{border:1px solid #ddd;border-radius:.5em;padding:.8em 1em;margin:.8em 0}
.row{display:flex;gap:2em;align-items:baseline;flex-wrap:wrap}
.big{font-size:2.6em;font-weight:700;line-height:1}.label{color:#666;font-size:.85em}
.none{color:#a33}.ok{color:#176f2c}
button{font:inherit;padding:.35em .9em;margin:.2em .3em .2em 0;border:1px solid #888;border-radius:.4em;background:#f6f6f6;cursor:pointer}
button.main{background:#1f5fbf;color:#fff;border-color:#1f5fbf}
input{font:inherit;padding:.3em;width:9em}
#nodes .tag{margin-right:.4em}#travel{font-weight:600;margin-top:.4em}
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{padding:.2em .5em;border-bottom:1px solid #eee;text-align:left}
td.status{font-variant-numeric:tabular-nums}
</style></head>
<body data-strategy="__STRATEGY_HTML__">
<h1>session-kit <span class="tag" id="strategy" style="background:#333">__STRATEGY_HTML__</span></h1>
<p class="sub">This page itself was served by <span id="page-node"></span>. Every request below goes through
the load balancer; the node that answered is in its <code>X-Served-By</code> header.</p>
<div class="card"><div class="row">
  <div><div class="label">session</div><div id="user" class="none">no session</div></div>
  <div><div class="label">counter</div><div id="counter" class="big">-</div></div>
  <div><div class="label">carried as</div><div id="carrier">__CARRIER__</div></div>
</div>
<p><input id="name" value="alice" aria-label="user name">
<button id="login" class="main">Log in</button><button id="increment">Increment</button>
<button id="refresh">Read session</button><button id="logout">Log out</button></p></div>
<div class="card"><div class="label">nodes that served this session</div>
<div id="nodes">-</div><div id="travel" data-count="0"></div></div>
<div class="card"><div class="label">recent requests (newest first)</div>
<table><thead><tr><th>time</th><th>request</th><th>answer</th><th>served by</th><th>counter</th></tr></thead>
<tbody id="log"></tbody></table></div>
<script>
"use strict";
const BEARER = __BEARER__;
const KEEP = 20;
const PAGE_NODE = __NODE_JSON__;
// one clearly different colour per node, in the order of their names (nodes differ by a digit: a hash would not do)
const PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
function colour(node) {
  const names = [...new Set(history().map(e => e.node).concat([PAGE_NODE]))].filter(n => n !== "balancer").sort();
  return PALETTE[Math.max(0, names.indexOf(node)) % PALETTE.length];
}
function tag(node) {
  const span = document.createElement("span");
  span.className = "tag";
  span.textContent = node;
  span.style.background = node === "balancer" ? "#777" : colour(node);
  return span;
}
function history() { return JSON.parse(sessionStorage.getItem("history") || "[]"); }
function remember(entry) {
  const h = history();
  h.unshift(entry);
  sessionStorage.setItem("history", JSON.stringify(h.slice(0, 200)));
}
function draw() {
  const h = history();
  const log = document.getElementById("log");
  log.textContent = "";
  for (const e of h.slice(0, KEEP)) {
    const tr = document.createElement("tr");
    for (const text of [e.time, e.request, e.status]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.children[2].className = "status";
    const by = document.createElement("td");
    by.appendChild(tag(e.node));
    tr.appendChild(by);
    const counter = document.createElement("td");
    counter.textContent = e.counter === undefined || e.counter === null ? "" : e.counter;
    tr.appendChild(counter);
    log.appendChild(tr);
  }
  // this session's requests: since the last successful login, while it lasted
  const counts = {};
  for (const e of h) {
    if (e.node !== "balancer") counts[e.node] = (counts[e.node] || 0) + 1;
    if (e.request === "POST /login" && e.status === 200) break;
  }
  const nodes = document.getElementById("nodes");
  nodes.textContent = "";
  const names = Object.keys(counts).sort();
  for (const n of names) {
    const t = tag(n);
    t.textContent = n + " \\u00d7 " + counts[n];
    nodes.appendChild(t);
  }
  if (!names.length) nodes.textContent = "-";
  const travel = document.getElementById("travel");
  travel.dataset.count = names.length;
  travel.textContent = names.length > 1 ? names.length + " different nodes served this one session"
    : names.length === 1 ? "one node so far" : "";
  travel.className = names.length > 1 ? "ok" : "";
}
function headers(json) {
  const h = json ? {"Content-Type": "application/json"} : {};
  const token = sessionStorage.getItem("token");
  if (BEARER && token) h["Authorization"] = "Bearer " + token;
  return h;
}
async function call(method, path, body) {
  let status = 0, data = null, node = "balancer";
  try {
    const r = await fetch(path, {method, headers: headers(body !== undefined), cache: "no-store",
                                 body: body === undefined ? undefined : JSON.stringify(body)});
    status = r.status;
    node = r.headers.get("X-Served-By") || "balancer";
    data = await r.json().catch(() => null);
  } catch (error) {
    status = "no answer";
  }
  remember({time: new Date().toLocaleTimeString(), request: method + " " + path, status, node,
            counter: data && data.counter !== undefined ? data.counter : null});
  draw();
  return [status, data];
}
function showSession(status, s) {
  const user = document.getElementById("user");
  const ok = status === 200 && s;
  user.textContent = ok ? s.user : "no session";
  user.className = ok ? "ok" : "none";
  document.getElementById("counter").textContent = ok ? s.counter : "-";
  document.body.dataset.session = ok ? "yes" : "no";
}
async function readSession() {
  const [status, s] = await call("GET", "/session");
  showSession(status, s);
}
async function login() {
  const [status, s] = await call("POST", "/login", {username: document.getElementById("name").value});
  if (status === 200 && BEARER && s.token) sessionStorage.setItem("token", s.token);
  await readSession();
}
async function increment() {
  const [status, s] = await call("POST", "/session/counter");
  if (status === 200) document.getElementById("counter").textContent = s.counter;
  else await readSession();
}
async function logout() {
  await call("POST", "/logout");
  sessionStorage.removeItem("token");
  await readSession();
}
let busy = Promise.resolve();
function queued(action) { return () => { busy = busy.then(action, action); return busy; }; }
document.getElementById("login").onclick = queued(login);
document.getElementById("increment").onclick = queued(increment);
document.getElementById("refresh").onclick = queued(readSession);
document.getElementById("logout").onclick = queued(logout);
document.getElementById("page-node").appendChild(tag(PAGE_NODE));
draw();
busy = readSession();
</script></body></html>
"""


def render(node: str, strategy: str, bearer: bool) -> str:
    carrier = "a bearer token, kept by this page (sessionStorage)" if bearer else "the SESSION cookie"
    return (
        _PAGE.replace("__NODE_HTML__", html.escape(node))
        .replace("__STRATEGY_HTML__", html.escape(strategy))
        .replace("__CARRIER__", html.escape(carrier))
        .replace("__BEARER__", json.dumps(bool(bearer)))
        .replace("__NODE_JSON__", json.dumps(node).replace("<", "\\u003c"))
    )
