"""The live dashboard page: one static HTML document with inline JS and no build step.

It polls /admin/stats, /admin/models, /admin/devices and /admin/bots once a second with the
token from ``?token=`` (or a prompt) as a bearer header, and draws lanes, queue depths, running
jobs, resource bars, devices and a p95 latency chart on a <canvas>. Kept in a Python module so
it ships inside the package without package-data configuration.
"""

from __future__ import annotations


def dashboard_html() -> str:
    return PAGE


PAGE = r"""<!doctype html>
<!-- xiaoyou live dashboard: polls the /admin API with a bearer token; no build step. -->
<html lang="en">
<head>
<meta charset="utf-8">
<title>xiaoyou dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #0f1419; color: #e6e6e6; }
  header { display: flex; gap: 2em; align-items: baseline; padding: .6em 1em;
           background: #1b232c; }
  header h1 { font-size: 1.2em; margin: 0; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
         gap: 1em; padding: 1em; }
  section { background: #1b232c; border-radius: 6px; padding: .6em 1em; }
  h2 { font-size: 1em; margin: .2em 0 .6em; color: #8fb8de; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: right; padding: 2px 6px; border-bottom: 1px solid #2a3440; }
  th:first-child, td:first-child { text-align: left; }
  .bar { background: #2a3440; border-radius: 3px; height: 14px; position: relative; }
  .bar > div { background: #4caf50; height: 100%; border-radius: 3px; }
  .bar.hot > div { background: #e57373; }
  .muted { color: #7d8a96; }
  #error { color: #e57373; }
  canvas { width: 100%; height: 220px; background: #121a21; }
  button { background: #2a3440; color: #e6e6e6; border: 1px solid #3b4756; border-radius: 3px;
           cursor: pointer; }
  .wide { grid-column: span 2; }
  @media (max-width: 900px) { .wide { grid-column: auto; } }
  th { color: #8fb8de; font-weight: 600; }
</style>
</head>
<body>
<header>
  <h1>xiaoyou</h1>
  <span>uptime <b id="uptime">–</b> s</span>
  <span>loop lag p99 <b id="loop-lag">–</b> ms</span>
  <span>state <b id="state">–</b></span>
  <span>running <b id="running-count">–</b></span>
  <span class="muted">updated <span id="updated">never</span></span>
  <a class="muted" href="/admin/docs">API docs</a>
  <span id="error"></span>
</header>
<main>
  <section class="wide"><h2>Lanes</h2>
    <table id="lanes"><thead><tr><th>lane</th><th>queued</th><th>running</th><th>submitted</th>
      <th>completed</th><th>failed</th><th>cancelled</th><th>rejected</th><th>wait p95 ms</th>
      <th>run p95 ms</th></tr></thead><tbody></tbody></table>
  </section>
  <section><h2>Resources</h2><table id="resources"><tbody></tbody></table></section>
  <section><h2>Latency (p95, ms)</h2><canvas id="chart" width="800" height="220"></canvas>
    <div class="muted" id="legend"></div></section>
  <section><h2>Running jobs</h2>
    <table id="jobs"><thead><tr><th>id</th><th>kind</th><th>lane</th><th>owner</th>
      <th>label</th>
      <th>run s</th><th></th></tr></thead><tbody></tbody></table>
  </section>
  <section><h2>Models</h2><table id="models"><tbody></tbody></table></section>
  <section><h2>Devices</h2><table id="devices"><tbody></tbody></table></section>
  <section><h2>Bots</h2><table id="bots"><tbody></tbody></table></section>
</main>
<script>
"use strict";
const POLL_MS = 1000, HISTORY = 120;
const COLORS = {realtime: "#e57373", interactive: "#64b5f6", background: "#81c784"};
const params = new URLSearchParams(location.search);
let token = params.get("token") || sessionStorage.getItem("xiaoyou-token") || "";
if (!token) token = prompt("admin token") || "";
sessionStorage.setItem("xiaoyou-token", token);
// keep the token out of the address bar and history
if (params.has("token")) history.replaceState(null, "", location.pathname);
const history_ = [];  // [{lane: {wait, run}}]

async function api(path) {
  const r = await fetch(path, {headers: {Authorization: "Bearer " + token}});
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function fmt(v) {
  if (v === undefined || v === null) return "–";
  return typeof v === "number" ? String(Math.round(v * 1000) / 1000) : String(v);
}
function row(tbody, cells, id) {
  const tr = el("tr", undefined, id ? {id} : {});
  for (const [text, cellId] of cells) {
    tr.appendChild(el("td", fmt(text), cellId ? {id: cellId} : {}));
  }
  tbody.appendChild(tr);
  return tr;
}
function body(id) {
  const t = document.querySelector("#" + id + " tbody");
  t.replaceChildren();
  return t;
}

function renderStats(s) {
  document.getElementById("uptime").textContent = fmt(s.uptime_s);
  document.getElementById("state").textContent = s.state;
  document.getElementById("loop-lag").textContent = fmt((s.loop_lag_ms || {}).p99);
  const lanes = body("lanes"), point = {};
  for (const [lane, r] of Object.entries(s.lanes)) {
    const fields = ["queued", "running", "submitted", "completed", "failed", "cancelled",
                    "rejected"];
    const cells = [[lane]].concat(fields.map(f => [r[f], `lane-${lane}-${f}`]));
    cells.push([(r.wait_ms || {}).p95, `lane-${lane}-wait-p95`],
               [(r.run_ms || {}).p95, `lane-${lane}-run-p95`]);
    row(lanes, cells, "lane-" + lane);
    point[lane] = {wait: (r.wait_ms || {}).p95, run: (r.run_ms || {}).p95};
  }
  history_.push(point);
  if (history_.length > HISTORY) history_.shift();
  const res = body("resources");
  for (const [name, r] of Object.entries(Object.assign({}, s.resources, s.slots))) {
    if (!r.budget) continue;  // e.g. the process pool when it is off
    const tr = row(res, [[name], [`${r.used} / ${r.budget}`, `res-${name}`]]);
    const frac = r.budget ? r.used / r.budget : 0;
    const bar = el("div", undefined, {class: "bar" + (frac > 0.9 ? " hot" : "")});
    const fill = el("div");
    fill.style.width = Math.min(100, frac * 100) + "%";
    bar.appendChild(fill);
    const td = el("td"); td.style.width = "50%"; td.appendChild(bar); tr.appendChild(td);
  }
  drawChart();
}

function drawChart() {
  const c = document.getElementById("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  let max = 1;
  for (const p of history_) {
    for (const v of Object.values(p)) max = Math.max(max, v.wait || 0, v.run || 0);
  }
  g.fillStyle = "#7d8a96"; g.font = "12px sans-serif"; g.fillText(fmt(max) + " ms", 4, 12);
  const span = Math.max(10, history_.length) - 1;
  const x = i => (i / span) * c.width, y = v => c.height - (v / max) * (c.height - 16);
  const legend = [];
  for (const lane of Object.keys(COLORS)) {
    for (const [key, dash] of [["run", []], ["wait", [4, 4]]]) {
      g.strokeStyle = COLORS[lane]; g.setLineDash(dash); g.beginPath();
      let started = false;
      history_.forEach((p, i) => {
        const v = (p[lane] || {})[key];
        if (v === undefined) return;
        started ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v)); started = true;
      });
      g.stroke();
    }
    legend.push(`${lane} (solid: run, dashed: wait)`);
  }
  document.getElementById("legend").textContent = legend.join(" · ");
}

function renderList(id, items, columns) {
  const t = body(id), head = el("tr");
  if (!items.length) { row(t, [["none"]]); return; }
  columns.forEach(c => head.appendChild(el("th", c)));
  t.appendChild(head);
  const show = v => (v !== null && typeof v === "object" ? JSON.stringify(v) : v);
  for (const item of items) row(t, columns.map(c => [show(item[c])]));
}

async function cancelJob(id) {
  const r = await fetch("/admin/tasks/" + id,
                        {method: "DELETE", headers: {Authorization: "Bearer " + token}});
  document.getElementById("error").textContent = r.ok ? "" : `cancel ${id}: HTTP ${r.status}`;
}

async function tick() {
  try {
    const [stats, models, devices, bots] = await Promise.all([
      api("/admin/stats"), api("/admin/models"), api("/admin/devices"), api("/admin/bots")]);
    renderStats(stats);
    document.getElementById("running-count").textContent = String(stats.running.length);
    const jt = body("jobs");
    for (const j of stats.running) {
      const tr = row(jt, [[j.id], [j.kind], [j.lane], [j.owner], [j.label], [j.run_s]],
                     "job-" + j.id);
      const stop = el("button", "cancel", {title: "DELETE /admin/tasks/" + j.id});
      stop.onclick = () => cancelJob(j.id);
      const td = el("td"); td.appendChild(stop); tr.appendChild(td);
    }
    renderList("models", models, Object.keys(models[0] || {name: 1}));
    renderList("devices", devices, Object.keys(devices[0] || {id: 1}));
    renderList("bots", bots, Object.keys(bots[0] || {self_id: 1}));
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.getElementById("error").textContent = "";
    document.body.dataset.ticks = String(Number(document.body.dataset.ticks || 0) + 1);
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
  }
  setTimeout(tick, POLL_MS);
}
tick();
</script>
</body>
</html>
"""
