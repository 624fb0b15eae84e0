"""The live dashboard page: one static HTML document with inline JS and no build step.

The page asks for the admin token in a form, keeps it in ``sessionStorage`` (this tab only)
and sends it as an ``Authorization: Bearer`` header; it is never put in a URL, so it cannot
end up in access logs or browser history. When the server has no admin token configured the
page says so and how to set one, instead of asking for a token nobody has. Then it polls
/admin/stats, /admin/models, /admin/workers, /admin/devices and /admin/bots once a second and
draws lanes, queue depths, running jobs, resource bars, models, worker processes and the Ray
pool (boxes, their resources and actors; replicas with state, running jobs and last error;
why the pool is degraded), devices, bots and a p95 latency chart.

Labels are Chinese by default with an English switch (remembered in ``localStorage``);
durations and times are shown as "3 分 5 秒" / "5 分钟前" rather than raw seconds. The layout
fits a 1280 px wide window without horizontal scrolling.

Kept in a Python module so it ships inside the package without package-data configuration.
"""

from __future__ import annotations

ADMIN_FLAG = "__XIAOYOU_ADMIN__"  # replaced by "on" or "off" in the served page


def dashboard_html(*, admin_enabled: bool = True) -> str:
    """The page; ``admin_enabled`` False shows how to configure a token instead of a login."""
    return PAGE.replace(ADMIN_FLAG, "on" if admin_enabled else "off")


PAGE = r"""<!doctype html>
<!-- xiaoyou live dashboard: polls the /admin API with a bearer token; no build step. -->
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>xiaoyou 管理面板</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<style>
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif;
         margin: 0; background: #0f1419; color: #e6e6e6; }
  header { display: flex; flex-wrap: wrap; gap: .4em 1.6em; align-items: baseline;
           padding: .6em 1em; background: #1b232c; }
  header h1 { font-size: 1.2em; margin: 0; }
  header .spacer { flex: 1; }
  main { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1em;
         padding: 1em; }
  section { background: #1b232c; border-radius: 6px; padding: .6em 1em; min-width: 0;
            overflow-x: auto; }
  h2 { font-size: 1em; margin: .2em 0 .6em; color: #8fb8de; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #2a3440;
           overflow-wrap: anywhere; }
  /* numbers line up on the right */
  #lanes th:not(:first-child), #lanes td:not(:first-child), #resources td:nth-child(2),
  .num { text-align: right; }
  th { color: #8fb8de; font-weight: 600; white-space: nowrap; }
  .bar { background: #2a3440; border-radius: 3px; height: 14px; }
  .bar > div { background: #4caf50; height: 100%; border-radius: 3px; }
  .bar.hot > div { background: #e57373; }
  .muted { color: #7d8a96; }
  .bad { color: #e57373; }
  .good { color: #81c784; }
  #error { color: #e57373; }
  canvas { width: 100%; height: 200px; background: #121a21; display: block; }
  button { background: #2a3440; color: #e6e6e6; border: 1px solid #3b4756; border-radius: 3px;
           cursor: pointer; font: inherit; padding: 1px 8px; }
  .wide { grid-column: 1 / -1; }
  @media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
  .panel { max-width: 40em; margin: 3em auto; background: #1b232c; border-radius: 6px;
           padding: 1.2em 1.6em; }
  .panel h2 { font-size: 1.2em; }
  .panel input { font: inherit; width: 100%; padding: .4em; margin: .4em 0 .8em;
                 background: #0f1419; color: #e6e6e6; border: 1px solid #3b4756;
                 border-radius: 3px; }
  code, pre { background: #0f1419; border-radius: 3px; padding: 0 .3em; }
  pre { padding: .6em; overflow-x: auto; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-admin="__XIAOYOU_ADMIN__">
<header>
  <h1>xiaoyou <span data-i18n="title">管理面板</span></h1>
  <span class="live"><span data-i18n="uptime">运行时间</span> <b id="uptime">–</b></span>
  <span class="live"><span data-i18n="loop_lag">事件循环延迟 p99</span>
    <b id="loop-lag">–</b> ms</span>
  <span class="live"><span data-i18n="state">调度器</span> <b id="state">–</b></span>
  <span class="live"><span data-i18n="running">运行中</span> <b id="running-count">–</b></span>
  <span class="muted live"><span data-i18n="updated">更新于</span>
    <span id="updated" data-i18n="never">尚未</span></span>
  <span id="error"></span>
  <span class="spacer"></span>
  <a class="muted" href="/admin/docs" data-i18n="api_docs">API 文档</a>
  <button id="lang-switch" type="button" title="中文 / English">English</button>
  <button id="logout" type="button" data-i18n="logout" hidden>退出</button>
</header>

<div id="setup" class="panel" hidden>
  <h2 data-i18n="setup_title">管理 API 未启用：没有设置管理令牌</h2>
  <p data-i18n="setup_why"></p>
  <p data-i18n="setup_how"></p>
  <pre>openssl rand -hex 32
XIAOYOU_ADMIN__TOKEN=&lt;生成的令牌&gt;      # .env
[admin]
token = "&lt;生成的令牌&gt;"               # xiaoyou.toml</pre>
  <p class="muted" data-i18n="setup_check"></p>
</div>

<form id="login" class="panel" method="post" action="#" autocomplete="on" hidden>
  <h2 data-i18n="login_title">登录管理面板</h2>
  <label for="token-input" data-i18n="token_label">管理令牌（XIAOYOU_ADMIN__TOKEN）</label>
  <input id="token-input" name="password" type="password" autocomplete="current-password"
         required autofocus>
  <button id="login-submit" type="submit" data-i18n="login">登录</button>
  <p id="login-error" class="bad"></p>
  <p class="muted" data-i18n="token_note"></p>
</form>

<main id="dash" hidden>
  <section class="wide"><h2 data-i18n="lanes">调度通道</h2>
    <table id="lanes"><thead><tr><th data-i18n="lane">通道</th><th data-i18n="queued">排队</th>
      <th data-i18n="running_col">运行</th><th data-i18n="submitted">已提交</th>
      <th data-i18n="completed">已完成</th><th data-i18n="failed">失败</th>
      <th data-i18n="cancelled">已取消</th><th data-i18n="rejected">已拒绝</th>
      <th data-i18n="wait_p95">等待 p95 (ms)</th><th data-i18n="run_p95">运行 p95 (ms)</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section><h2 data-i18n="resources">资源</h2><table id="resources"><tbody></tbody></table>
  </section>
  <section><h2 data-i18n="latency">延迟 p95 (ms)</h2>
    <canvas id="chart" width="600" height="200"></canvas>
    <div class="muted" id="legend"></div></section>
  <section class="wide"><h2 data-i18n="jobs">正在运行的任务</h2>
    <table id="jobs"><thead><tr><th>ID</th><th data-i18n="kind">类型</th>
      <th data-i18n="lane">通道</th><th data-i18n="owner">发起者</th>
      <th data-i18n="label">内容</th><th data-i18n="run_time">已运行</th><th></th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section class="wide"><h2 data-i18n="models">模型</h2><table id="models"><tbody></tbody></table>
  </section>
  <section class="wide" id="workers-section" hidden><h2 data-i18n="workers">工作节点</h2>
    <p id="ray-problems" class="bad"></p>
    <table id="ray-nodes"><tbody></tbody></table>
    <table id="ray-replicas"><tbody></tbody></table>
    <table id="proc-workers"><tbody></tbody></table>
  </section>
  <section><h2 data-i18n="devices">设备</h2><table id="devices"><tbody></tbody></table></section>
  <section><h2 data-i18n="bots">QQ 机器人</h2><table id="bots"><tbody></tbody></table></section>
</main>
<script>
"use strict";
const POLL_MS = 1000, HISTORY = 120, TOKEN_KEY = "xiaoyou-token", LANG_KEY = "xiaoyou-lang";
const COLORS = {realtime: "#e57373", interactive: "#64b5f6", background: "#81c784"};
const T = {
  zh: {
    title: "管理面板", uptime: "运行时间", loop_lag: "事件循环延迟 p99", state: "调度器",
    running: "运行中", updated: "更新于", never: "尚未", api_docs: "API 文档", logout: "退出",
    setup_title: "管理 API 未启用：没有设置管理令牌",
    setup_why: "服务没有配置管理令牌，所以管理 API 和这个面板都处于关闭状态" +
               "（接口返回 HTTP 503）。",
    setup_how: "生成一个随机令牌，写进 .env（或 xiaoyou.toml 的 [admin] 段），然后重启服务：",
    setup_check: "重启后用 xiaoyou check-config 确认“管理令牌：已设置”，再刷新本页。",
    login_title: "登录管理面板", token_label: "管理令牌（XIAOYOU_ADMIN__TOKEN）", login: "登录",
    token_note: "令牌只保存在本标签页（sessionStorage），以 Authorization 请求头发送，" +
                "不会出现在网址里。",
    wrong_token: "令牌不正确，请重新输入。",
    url_token: "网址里的令牌已被忽略并移除：请在这里输入（令牌不应出现在网址里）。",
    lanes: "调度通道", lane: "通道", queued: "排队", running_col: "运行", submitted: "已提交",
    completed: "已完成", failed: "失败", cancelled: "已取消", rejected: "已拒绝",
    wait_p95: "等待 p95 (ms)", run_p95: "运行 p95 (ms)", resources: "资源",
    latency: "延迟 p95 (ms)", jobs: "正在运行的任务", kind: "类型", owner: "发起者",
    label: "内容", run_time: "已运行", cancel: "取消", models: "模型", devices: "设备",
    bots: "QQ 机器人", none: "无", legend: "实线：运行，虚线：等待",
    lane_realtime: "实时语音", lane_interactive: "交互对话", lane_background: "后台任务",
    st_created: "未启动", st_running: "运行中", st_draining: "排空中", st_stopped: "已停止",
    res_cpu: "CPU 槽位", res_runner: "执行槽", res_thread: "线程池", res_process: "进程池",
    res_vram: "显存 MB",
    m_name: "名称", m_provider: "实现", m_device: "设备", m_state: "状态", m_mem: "内存 MB",
    m_load: "加载耗时", m_used: "最近使用", m_uses: "调用次数",
    m_loaded: "已加载", m_loading: "加载中", m_in_use: "使用中", m_unloaded: "未加载",
    m_failed: "加载失败",
    d_id: "设备 ID", d_state: "状态", d_proto: "协议", d_since: "已连接", d_remote: "地址",
    ds_connected: "已连接", ds_ready: "就绪", ds_listening: "聆听中", ds_thinking: "思考中",
    ds_speaking: "说话中", ds_closed: "已断开",
    b_id: "QQ 号", b_adapter: "适配器", b_since: "已连接",
    workers: "工作节点", w_box: "节点", w_addr: "地址", w_alive: "状态", w_res: "资源",
    w_reserved: "已占用", w_actors: "模型实例", w_node_up: "在线", w_node_lost: "已失联",
    w_replica: "实例", w_model: "模型", w_state: "状态", w_jobs: "正在运行的任务",
    w_starts: "启动次数", w_error: "最近错误", w_pid: "进程号", w_proc: "工作进程",
    ws_alive: "运行中", ws_restarting: "重启中", ws_starting: "启动中", ws_dead: "已停止响应",
    ws_stopped: "已关闭", ws_new: "未启动", ws_idle: "空闲", ws_busy: "忙碌",
    w_degraded: "Ray 集群降级：",
    ago: "{0}前", day: "天", hour: "小时", min: "分", sec: "秒", ms: "毫秒",
    http: "请求失败", cancel_failed: "取消任务 {0} 失败：HTTP {1}", disabled: "管理 API 已关闭",
  },
  en: {
    title: "dashboard", uptime: "uptime", loop_lag: "loop lag p99", state: "scheduler",
    running: "running", updated: "updated", never: "never", api_docs: "API docs",
    logout: "log out",
    setup_title: "Admin API disabled: no admin token is configured",
    setup_why: "The service has no admin token, so the admin API and this page are off " +
               "(the API answers HTTP 503).",
    setup_how: "Generate a random token, put it in .env (or the [admin] table of " +
               "xiaoyou.toml), then restart the service:",
    setup_check: "After the restart, xiaoyou check-config shows the admin token as set; " +
                 "then reload this page.",
    login_title: "Log in to the dashboard", token_label: "Admin token (XIAOYOU_ADMIN__TOKEN)",
    login: "Log in",
    token_note: "The token stays in this tab (sessionStorage) and is sent as an " +
                "Authorization header, never in a URL.",
    wrong_token: "Wrong token, please try again.",
    url_token: "The token in the address was ignored and removed: enter it here " +
               "(tokens do not belong in URLs).",
    lanes: "Lanes", lane: "lane", queued: "queued", running_col: "running",
    submitted: "submitted", completed: "completed", failed: "failed", cancelled: "cancelled",
    rejected: "rejected", wait_p95: "wait p95 (ms)", run_p95: "run p95 (ms)",
    resources: "Resources", latency: "Latency p95 (ms)", jobs: "Running jobs", kind: "kind",
    owner: "owner", label: "label", run_time: "running for", cancel: "cancel",
    models: "Models", devices: "Devices", bots: "QQ bots", none: "none",
    legend: "solid: run, dashed: wait",
    lane_realtime: "realtime voice", lane_interactive: "interactive chat",
    lane_background: "background",
    st_created: "created", st_running: "running", st_draining: "draining", st_stopped: "stopped",
    res_cpu: "CPU slots", res_runner: "runners", res_thread: "thread pool",
    res_process: "process pool", res_vram: "VRAM MB",
    m_name: "name", m_provider: "provider", m_device: "device", m_state: "state",
    m_mem: "memory MB", m_load: "load time", m_used: "last used", m_uses: "uses",
    m_loaded: "loaded", m_loading: "loading", m_in_use: "in use", m_unloaded: "not loaded",
    m_failed: "load failed",
    d_id: "device id", d_state: "state", d_proto: "protocol", d_since: "connected for",
    d_remote: "address",
    ds_connected: "connected", ds_ready: "ready", ds_listening: "listening",
    ds_thinking: "thinking", ds_speaking: "speaking", ds_closed: "closed",
    b_id: "QQ number", b_adapter: "adapter", b_since: "connected for",
    workers: "Workers", w_box: "box", w_addr: "address", w_alive: "state", w_res: "resources",
    w_reserved: "reserved", w_actors: "actors", w_node_up: "alive", w_node_lost: "lost",
    w_replica: "replica", w_model: "model", w_state: "state", w_jobs: "running jobs",
    w_starts: "starts", w_error: "last error", w_pid: "pid", w_proc: "worker process",
    ws_alive: "alive", ws_restarting: "restarting", ws_starting: "starting", ws_dead: "dead",
    ws_stopped: "stopped", ws_new: "not started", ws_idle: "idle", ws_busy: "busy",
    w_degraded: "Ray pool degraded: ",
    ago: "{0} ago", day: "d", hour: "h", min: "min", sec: "s", ms: "ms",
    http: "request failed", cancel_failed: "cancel {0}: HTTP {1}", disabled: "admin API is off",
  },
};
let lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let timer = null, lastData = null;
const history_ = [];  // [{lane: {wait, run}}]

function t(key, ...args) {
  let s = (T[lang] || T.zh)[key];
  if (s === undefined) s = T.en[key] === undefined ? key : T.en[key];
  args.forEach((a, i) => { s = s.replace("{" + i + "}", String(a)); });
  return s;
}
function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = "xiaoyou " + t("title");
  for (const e of document.querySelectorAll("[data-i18n]")) {
    if (e.id === "updated" && lastData) continue;
    e.textContent = t(e.dataset.i18n);
  }
  document.getElementById("lang-switch").textContent = lang === "zh" ? "English" : "中文";
  if (lastData) render(lastData);
}

const $ = id => document.getElementById(id);
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function num(v) {
  if (v === undefined || v === null) return "–";
  return typeof v === "number" ? String(Math.round(v * 10) / 10) : String(v);
}
function dur(s) {  // seconds -> "2 小时 3 分" / "2 h 3 min"
  if (s === undefined || s === null) return "–";
  if (s < 1) return Math.round(s * 1000) + " " + t("ms");
  if (s < 60) return (Math.round(s * 10) / 10) + " " + t("sec");
  const parts = [], units = [[86400, "day"], [3600, "hour"], [60, "min"], [1, "sec"]];
  let left = Math.floor(s);
  for (const [size, unit] of units) {
    const n = Math.floor(left / size);
    if (n || (parts.length && parts.length < 2)) parts.push(n + " " + t(unit));
    left -= n * size;
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}
function stamp(ts) {  // epoch seconds -> local date and time
  return new Date(ts * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {hour12: false});
}
function ago(ts) { return ts ? t("ago", dur(Math.max(0, Date.now() / 1000 - ts))) : "–"; }
function since(ts) { return ts ? dur(Math.max(0, Date.now() / 1000 - ts)) : "–"; }
function cell(tr, text, attrs) { const td = el("td", text, attrs); tr.appendChild(td); return td; }
function body(id) {
  const tb = document.querySelector("#" + id + " tbody");
  tb.replaceChildren();
  return tb;
}
function header(tb, keys) {
  const tr = el("tr");
  keys.forEach(k => tr.appendChild(el("th", t(k))));
  tb.appendChild(tr);
}
function empty(tb) {
  const tr = el("tr");
  cell(tr, t("none"), {class: "muted"});
  tb.appendChild(tr);
}
function laneName(lane) { const k = "lane_" + lane; return T.zh[k] ? t(k) : lane; }
function resName(name) {
  if (name.startsWith("vram:")) return t("res_vram") + " (GPU " + name.slice(5) + ")";
  const k = "res_" + name; return T.zh[k] ? t(k) : name;
}

// -- screens -----------------------------------------------------------------------------
function show(screen) {
  $("setup").hidden = screen !== "setup";
  $("login").hidden = screen !== "login";
  $("dash").hidden = screen !== "dash";
  $("logout").hidden = screen !== "dash";
  for (const e of document.querySelectorAll(".live")) e.hidden = screen !== "dash";
  document.body.dataset.screen = screen;
  if (screen === "login") $("token-input").focus();
}
function stop() { if (timer !== null) clearTimeout(timer); timer = null; }
function askToken(message) {
  stop();
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  $("login-error").textContent = message || "";
  show("login");
}

class HttpError extends Error {
  constructor(path, status, detail) {
    super(path + ": HTTP " + status);
    this.status = status;
    this.detail = detail;
  }
}
async function api(path, options) {
  const r = await fetch(path, Object.assign({headers: {Authorization: "Bearer " + token},
                                             cache: "no-store"}, options || {}));
  if (!r.ok) {
    let detail = "";
    try { detail = (await r.json()).detail || ""; } catch (_) { /* not JSON */ }
    throw new HttpError(path, r.status, detail);
  }
  return r.json();
}

// -- rendering ---------------------------------------------------------------------------
function render(d) {
  const s = d.stats;
  $("uptime").textContent = dur(s.uptime_s);
  $("uptime").dataset.seconds = String(s.uptime_s);
  $("state").textContent = T.zh["st_" + s.state] ? t("st_" + s.state) : s.state;
  $("state").dataset.value = s.state;
  $("loop-lag").textContent = num((s.loop_lag_ms || {}).p99);
  $("running-count").textContent = String(s.running.length);
  renderLanes(s);
  renderResources(s);
  drawChart();
  renderJobs(s.running);
  renderModels(d.models);
  renderWorkers(d.workers);
  renderDevices(d.devices);
  renderBots(d.bots);
}
function renderLanes(s) {
  const tb = body("lanes");
  const fields = ["queued", "running", "submitted", "completed", "failed", "cancelled",
                  "rejected"];
  for (const [lane, r] of Object.entries(s.lanes)) {
    const tr = el("tr", undefined, {id: "lane-" + lane});
    cell(tr, laneName(lane), {title: lane});
    for (const f of fields) cell(tr, num(r[f]), {id: `lane-${lane}-${f}`});
    cell(tr, num((r.wait_ms || {}).p95), {id: `lane-${lane}-wait-p95`});
    cell(tr, num((r.run_ms || {}).p95), {id: `lane-${lane}-run-p95`});
    tb.appendChild(tr);
  }
}
function renderResources(s) {
  const tb = body("resources");
  for (const [name, r] of Object.entries(Object.assign({}, s.resources, s.slots))) {
    if (!r.budget) continue;  // e.g. the process pool when it is off
    const tr = el("tr");
    cell(tr, resName(name), {title: name});
    cell(tr, `${r.used} / ${r.budget}`, {id: `res-${name}`});
    const frac = r.used / r.budget;
    const bar = el("div", undefined, {class: "bar" + (frac > 0.9 ? " hot" : "")});
    const fill = el("div");
    fill.style.width = Math.min(100, frac * 100) + "%";
    bar.appendChild(fill);
    cell(tr, undefined, {style: "width: 45%"}).appendChild(bar);
    tb.appendChild(tr);
  }
}
function drawChart() {
  const c = $("chart"), g = c.getContext("2d");
  const w = c.clientWidth || c.width;
  if (w && c.width !== w) c.width = w;  // draw at the displayed size (crisp text)
  g.clearRect(0, 0, c.width, c.height);
  let max = 1;
  for (const p of history_) {
    for (const v of Object.values(p)) max = Math.max(max, v.wait || 0, v.run || 0);
  }
  g.fillStyle = "#7d8a96"; g.font = "12px sans-serif"; g.fillText(num(max) + " ms", 4, 12);
  const span = Math.max(10, history_.length) - 1;
  const x = i => (i / span) * c.width, y = v => c.height - (v / max) * (c.height - 16);
  for (const lane of Object.keys(COLORS)) {
    for (const [key, dash] of [["run", []], ["wait", [4, 4]]]) {
      g.strokeStyle = COLORS[lane]; g.setLineDash(dash); g.beginPath();
      let started = false;
      history_.forEach((p, i) => {
        const v = (p[lane] || {})[key];
        if (v === undefined || v === null) return;
        started ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v)); started = true;
      });
      g.stroke();
    }
  }
  const legend = $("legend");
  legend.replaceChildren();
  for (const lane of Object.keys(COLORS)) {
    const item = el("span", "■ " + laneName(lane) + "  ");
    item.style.color = COLORS[lane];
    legend.appendChild(item);
  }
  legend.appendChild(el("span", "（" + t("legend") + "）"));
}
function renderJobs(running) {
  const tb = body("jobs");
  if (!running.length) { empty(tb); return; }
  for (const j of running) {
    const tr = el("tr", undefined, {id: "job-" + j.id});
    cell(tr, String(j.id)); cell(tr, j.kind); cell(tr, laneName(j.lane)); cell(tr, j.owner);
    cell(tr, j.label || ""); cell(tr, dur(j.run_s));
    const stopBtn = el("button", t("cancel"),
                       {type: "button", title: "DELETE /admin/tasks/" + j.id});
    stopBtn.onclick = () => cancelJob(j.id);
    cell(tr).appendChild(stopBtn);
    tb.appendChild(tr);
  }
}
function modelState(m) {
  if (m.load_error) return [t("m_failed"), "bad"];
  if (m.loading) return [t("m_loading"), ""];
  if (m.in_use) return [t("m_in_use"), "good"];
  return m.loaded ? [t("m_loaded"), "good"] : [t("m_unloaded"), "muted"];
}
function renderModels(models) {
  const tb = body("models");
  if (!models.length) { empty(tb); return; }
  header(tb, ["m_name", "m_provider", "m_device", "m_state", "m_mem", "m_load", "m_used",
              "m_uses"]);
  for (const m of models) {
    const tr = el("tr", undefined, {id: "model-" + m.name});
    cell(tr, m.name); cell(tr, m.provider || "–"); cell(tr, m.device || "–");
    const [text, cls] = modelState(m);
    cell(tr, text, {class: cls, title: m.load_error || ""});
    const mem = m.measured_mb !== undefined && m.measured_mb !== null
      ? `${num(m.measured_mb)} / ${num(m.footprint_mb)}` : num(m.footprint_mb);
    cell(tr, mem);
    cell(tr, m.load_s === undefined || m.load_s === null ? "–" : dur(m.load_s));
    cell(tr, ago(m.last_used_ts), m.last_used_ts ? {title: stamp(m.last_used_ts)} : {});
    cell(tr, num(m.uses));
    tb.appendChild(tr);
    if (m.load_error) {
      const err = el("tr");
      cell(err, m.load_error, {colspan: "8", class: "bad"});
      tb.appendChild(err);
    }
  }
}
function wState(state) {
  const cls = {alive: "good", idle: "good", busy: "good", dead: "bad", restarting: "",
               starting: "", stopped: "muted", new: "muted"}[state];
  return [T.zh["ws_" + state] ? t("ws_" + state) : String(state), cls || ""];
}
function resources(r) {
  return Object.entries(r || {}).map(([k, v]) => k + " " + num(v)).join(", ") || "–";
}
function renderWorkers(w) {
  const ray = w.ray, procs = w.process || [];
  $("workers-section").hidden = !ray && !procs.length;
  const problems = ray ? ray.problems || [] : [];
  $("ray-problems").textContent = problems.length ? t("w_degraded") + problems.join("；") : "";
  let tb = body("ray-nodes");
  if (ray) {
    header(tb, ["w_box", "w_addr", "w_alive", "w_res", "w_reserved", "w_actors"]);
    if (!ray.nodes.length) empty(tb);
    for (const n of ray.nodes) {
      const tr = el("tr", undefined, {"data-box": n.box, "data-alive": String(n.alive)});
      cell(tr, n.box, {title: n.node_id}); cell(tr, n.address || "–");
      cell(tr, n.alive ? t("w_node_up") : t("w_node_lost"), {class: n.alive ? "good" : "bad"});
      cell(tr, resources(n.resources)); cell(tr, resources(n.reserved));
      cell(tr, n.actors.join(", ") || "–");
      tb.appendChild(tr);
    }
  }
  tb = body("ray-replicas");
  if (ray) {
    header(tb, ["w_replica", "w_model", "w_state", "w_box", "w_jobs", "w_starts", "w_error"]);
    for (const m of ray.models) {
      for (const r of m.replicas) {
        const tr = el("tr", undefined, {"data-replica": r.worker, "data-state": r.state});
        cell(tr, r.worker, {title: "pid " + (r.pid || "–")}); cell(tr, r.model);
        const [text, cls] = wState(r.state);
        cell(tr, text, {class: cls});
        cell(tr, r.box || "–");
        cell(tr, r.running_jobs.length ? r.running_jobs.map(j => "#" + j).join(" ") : "–");
        cell(tr, num(r.starts));
        cell(tr, r.last_error ? r.last_error + "（" + ago(r.last_error_at) + "）" : "–",
             {class: r.last_error ? "bad" : "muted"});
        tb.appendChild(tr);
      }
    }
  }
  tb = body("proc-workers");
  if (procs.length) {
    header(tb, ["w_proc", "w_state", "w_pid", "w_starts", "m_mem"]);
    for (const p of procs) {
      const tr = el("tr", undefined, {"data-proc": p.model});
      cell(tr, p.model);
      const [text, cls] = wState(p.state);
      cell(tr, text, {class: cls});
      cell(tr, p.pid === null || p.pid === undefined ? "–" : String(p.pid));
      cell(tr, num(p.starts)); cell(tr, num(p.measured_mb));
      tb.appendChild(tr);
    }
  }
}
function renderDevices(devices) {
  const tb = body("devices");
  if (!devices.length) { empty(tb); return; }
  header(tb, ["d_id", "d_state", "d_proto", "d_since", "d_remote"]);
  for (const d of devices) {
    const tr = el("tr");
    cell(tr, d.device_id || "–", {title: "session " + (d.session_id || "")});
    cell(tr, T.zh["ds_" + d.state] ? t("ds_" + d.state) : String(d.state), {"data-state": d.state});
    cell(tr, num(d.protocol_version));
    cell(tr, since(d.connected_since), d.connected_since ? {title: stamp(d.connected_since)} : {});
    cell(tr, d.remote || "–");
    tb.appendChild(tr);
  }
}
function renderBots(bots) {
  const tb = body("bots");
  if (!bots.length) { empty(tb); return; }
  header(tb, ["b_id", "b_adapter", "b_since"]);
  for (const b of bots) {
    const tr = el("tr");
    cell(tr, b.self_id); cell(tr, b.adapter || "–");
    cell(tr, since(b.connected_since), b.connected_since ? {title: stamp(b.connected_since)} : {});
    tb.appendChild(tr);
  }
}

async function cancelJob(id) {
  try {
    await api("/admin/tasks/" + id, {method: "DELETE"});
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = t("cancel_failed", id, e.status || "?");
  }
}

async function tick() {
  try {
    const [stats, models, workers, devices, bots] = await Promise.all([
      api("/admin/stats"), api("/admin/models"), api("/admin/workers"), api("/admin/devices"),
      api("/admin/bots")]);
    const point = {};
    for (const [lane, r] of Object.entries(stats.lanes)) {
      point[lane] = {wait: (r.wait_ms || {}).p95, run: (r.run_ms || {}).p95};
    }
    history_.push(point);
    if (history_.length > HISTORY) history_.shift();
    lastData = {stats, models, workers, devices, bots};
    show("dash");
    render(lastData);
    $("updated").textContent = new Date().toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB",
                                                             {hour12: false});
    $("error").textContent = "";
    document.body.dataset.ticks = String(Number(document.body.dataset.ticks || 0) + 1);
  } catch (e) {
    if (e.status === 401) { askToken(t("wrong_token")); return; }
    if (e.status === 503) { stop(); show("setup"); return; }
    $("error").textContent = t("http") + ": " + String(e.message || e);
  }
  timer = setTimeout(tick, POLL_MS);
}
function start() { stop(); tick(); }

$("login").addEventListener("submit", ev => {
  ev.preventDefault();  // never submit: a GET form would put the token in the URL
  token = $("token-input").value.trim();
  $("token-input").value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-error").textContent = "";
  start();
});
$("logout").addEventListener("click", () => { lastData = null; askToken(""); });
$("lang-switch").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem(LANG_KEY, lang);
  applyLang();
});

applyLang();
const params = new URLSearchParams(location.search);
const urlToken = params.has("token");
if (urlToken) history.replaceState(null, "", location.pathname);  // out of the address bar
if (document.body.dataset.admin === "off") show("setup");
else if (token) start();
else askToken(urlToken ? t("url_token") : "");
</script>
</body>
</html>
"""
