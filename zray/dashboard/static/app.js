// The zray dashboard: plain JS, no build step, no outside resources. One page per hash route;
// the shown page refreshes every REFRESH_MS while the tab is visible (a hidden tab asks nothing).
"use strict";
const REFRESH_MS = 2000;
const PAGE = 100;
const $main = document.getElementById("main");
const $status = document.getElementById("status");
const view = {page: null, timer: null, state: {}};

function esc(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") v = JSON.stringify(v);
  return String(v).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function short(id, n = 12) { return id ? esc(String(id).slice(0, n)) : ""; }
function badge(s) { return s ? `<span class="badge ${esc(s)}">${esc(s)}</span>` : ""; }
function bytes(n) {
  if (n === null || n === undefined || n < 0) return "";    // -1: not known where listed
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; n = Number(n);
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function when(ms) { return ms ? new Date(Number(ms)).toLocaleTimeString() : ""; }
function dur(a, b) { if (!a) return ""; const s = ((b || Date.now()) - a) / 1000; return s < 60 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`; }
function resources(r) { return r ? Object.entries(r).map(([k, v]) => `${esc(k)}: ${esc(Math.round(v * 100) / 100)}`).join(", ") : ""; }

async function api(path, signal) {
  const r = await fetch(path, {headers: {"Accept": "application/json"}, signal});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function table(columns, rows, opts = {}) {
  const head = columns.map(c => `<th>${esc(c[0])}</th>`).join("");
  const body = rows.map((row, i) => {
    const cls = opts.onclick ? ' class="click"' : "";
    return `<tr${cls} data-i="${i}">` + columns.map(c => `<td class="${c[2] || ""}">${c[1](row)}</td>`).join("") + "</tr>";
  }).join("");
  return `<table data-testid="${esc(opts.testid || "table")}"><thead><tr>${head}</tr></thead><tbody>${body || `<tr><td colspan="${columns.length}" class="muted">nothing to show</td></tr>`}</tbody></table>`;
}
function bindRows(container, rows, onclick) {
  if (!onclick) return;
  container.querySelectorAll("tr.click").forEach(tr => tr.addEventListener("click", () => onclick(rows[Number(tr.dataset.i)])));
}
function pager(total, offset, go) {
  const last = Math.max(0, Math.ceil(total / PAGE) - 1), page = Math.floor(offset / PAGE);
  const div = document.createElement("span");
  div.innerHTML = `<button data-p="prev" ${page ? "" : "disabled"}>‹ prev</button> page ${page + 1} of ${last + 1} (${total} rows) <button data-p="next" ${page < last ? "" : "disabled"}>next ›</button>`;
  div.querySelector('[data-p="prev"]').onclick = () => go(Math.max(0, offset - PAGE));
  div.querySelector('[data-p="next"]').onclick = () => go(offset + PAGE);
  return div;
}
function chips(counts, current, pick) {
  const span = document.createElement("span");
  const total = Object.values(counts || {}).reduce((a, b) => a + b, 0);
  const all = [["", `all (${total})`]].concat(Object.entries(counts || {}).map(([k, v]) => [k, `${k} (${v})`]));
  span.innerHTML = all.map(([k, label]) => `<span class="chip ${k === (current || "") ? "on" : ""}" data-k="${esc(k)}">${esc(label)}</span>`).join(" ");
  span.querySelectorAll(".chip").forEach(c => c.onclick = () => pick(c.dataset.k));
  return span;
}

// -- pages ---------------------------------------------------------------------------------------
const pages = {};

pages.cluster = async function () {
  const c = await api("/api/cluster");
  const store = c.store || {};
  const used = store.capacity ? 100 * store.used / store.capacity : 0;
  $main.innerHTML = `<h2>Cluster</h2>
    <div class="cards">
      <div class="card"><div class="k">nodes alive</div><div class="v" data-testid="nodes-alive">${c.nodes.filter(n => n.state === "ALIVE").length}</div></div>
      <div class="card"><div class="k">CPUs available / total</div><div class="v">${esc(c.available.CPU ?? 0)} / ${esc(c.total.CPU ?? 0)}</div></div>
      <div class="card"><div class="k">GPUs</div><div class="v">${esc(c.total.GPU ?? 0)}</div></div>
      <div class="card"><div class="k">workers (this node)</div><div class="v">${esc(c.workers)}</div></div>
      <div class="card"><div class="k">queued tasks (this node)</div><div class="v">${esc(c.queued)}</div></div>
      <div class="card"><div class="k">object store (this node)</div><div class="v">${bytes(store.used)} / ${bytes(store.capacity)}</div><div class="bar"><span style="width:${used.toFixed(1)}%"></span></div></div>
    </div>
    <h3>Nodes</h3><div id="nodes"></div>
    <p class="muted">This dashboard is served by node <span class="mono" data-testid="this-node">${esc(c.this_node)}</span>; session ${esc(c.session)}.</p>`;
  document.getElementById("nodes").innerHTML = table([
    ["node id", n => `<span class="mono">${esc(n.node_id)}</span>${n.node_id === c.this_node ? ' <span class="muted">(this node)</span>' : ""}`],
    ["state", n => badge(n.state)], ["ip", n => esc(n.node_ip)], ["host", n => esc(n.hostname || n.node_name)],
    ["mesh address", n => esc(n.mesh_address || "")],
    ["resources total", n => resources(n.resources_total)], ["available", n => resources(n.resources_available)],
  ], c.nodes, {testid: "nodes-table"});
};

// A listing page fetches on its own when the user types a search, picks a state or turns a
// page (after SEARCH_DEBOUNCE_MS of no typing), not on the next timed refresh; a newer request
// aborts the one in flight, and an answer that is no longer the newest is never drawn.
const SEARCH_DEBOUNCE_MS = 150;
function listingPage(resource, title, columns, opts = {}) {
  const pageName = opts.page || resource;
  const inflight = {seq: 0, ctl: null};
  async function load() {
    const st = view.state[resource] = view.state[resource] || {offset: 0, state: "", q: ""};
    const params = new URLSearchParams({offset: st.offset, limit: PAGE, detail: "1", counts: "0"});
    if (st.state) params.set("state", st.state);
    if (st.q) params.set("q", st.q);
    for (const [k, v] of Object.entries(opts.filters ? opts.filters() : {})) if (v) params.set(k, v);
    if (inflight.ctl) inflight.ctl.abort();
    const ctl = inflight.ctl = new AbortController(), seq = ++inflight.seq;
    const t0 = performance.now();
    let data;
    try {
      data = await api(`/api/${resource}?${params}`, ctl.signal);
    } catch (e) {
      if (seq !== inflight.seq) return;       // aborted or overtaken by a newer request
      throw e;
    } finally {
      if (inflight.ctl === ctl) inflight.ctl = null;
    }
    if (seq !== inflight.seq || view.page !== pageName) return;
    const now = () => { load().then(okStatus, errStatus); };
    let shell = document.getElementById(`${resource}-page`);
    if (!shell) {
      $main.innerHTML = `<div id="${resource}-page"><h2>${esc(title)}</h2><div class="toolbar">
        <input id="${resource}-q" placeholder="search any column" value="${esc(st.q)}" size="28">
        <span id="${resource}-chips"></span></div>${opts.extra || ""}<div class="toolbar" id="${resource}-pager"></div><div id="${resource}-table"></div></div>`;
      shell = document.getElementById(`${resource}-page`);
      const q = document.getElementById(`${resource}-q`);
      let typing = null;
      q.addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(() => {
          const text = q.value.trim();
          if (text === st.q) return;
          st.q = text; st.offset = 0; now();
        }, SEARCH_DEBOUNCE_MS);
      });
    }
    const chipBox = document.getElementById(`${resource}-chips`);
    const pickState = k => { st.state = k; st.offset = 0; now(); };
    if (!chipBox.children.length && st.counts) chipBox.replaceChildren(chips(st.counts, st.state, pickState));
    document.getElementById(`${resource}-pager`).replaceChildren(
      pager(data.total, data.offset, off => { st.offset = off; now(); }),
      Object.assign(document.createElement("span"), {className: "muted", textContent: `  (${(performance.now() - t0).toFixed(0)} ms)`}));
    const box = document.getElementById(`${resource}-table`);
    box.innerHTML = table(columns, data.rows, {testid: `${resource}-table`, onclick: opts.onclick});
    box.dataset.q = st.q;         // which search the rows answer (tests and benchmarks read it)
    bindRows(box, data.rows, opts.onclick);
    if (["actors", "tasks", "placement_groups"].includes(resource)) {   // after the rows: never in their way
      const cp = new URLSearchParams(params); cp.delete("state");
      api(`/api/counts/${resource}?${cp}`).then(c => {
        st.counts = c; if (view.page === pageName) chipBox.replaceChildren(chips(c, st.state, pickState));
      }).catch(() => {});
    }
    if (opts.after) await opts.after(data);
  }
  // The timed refresh leaves a request in flight alone: it asks for the same, or newer, rows.
  return async function () { if (!inflight.ctl) await load(); };
}

pages.actors = listingPage("actors", "Actors", [
  ["actor id", a => `<span class="mono">${esc(a.actor_id)}</span>`],
  ["class", a => esc(a.class_name)], ["name", a => esc(a.name)], ["state", a => badge(a.state)],
  ["namespace", a => esc(a.ray_namespace)], ["pid", a => esc(a.pid)], ["node", a => `<span class="mono">${short(a.node_id)}</span>`],
  ["restarts", a => esc(a.num_restarts)], ["job", a => esc(a.job_id)],
  ["death cause", a => esc(a.death_cause && (a.death_cause.actor_died_error_context || {}).error_message || (a.death_cause ? JSON.stringify(a.death_cause) : ""))],
], {onclick: a => { location.hash = `#logs?actor=${a.actor_id}&node_id=${a.node_id}&worker_id=${a.worker_id || ""}`; }});

pages.tasks = listingPage("tasks", "Tasks", [
  ["task id", t => `<span class="mono">${esc(t.task_id)}</span>`], ["name", t => esc(t.name)],
  ["state", t => badge(t.state)], ["type", t => esc(t.type)], ["attempt", t => esc(t.attempt_number)],
  ["job", t => esc(t.job_id)], ["node", t => `<span class="mono">${short(t.node_id)}</span>`], ["worker pid", t => esc(t.worker_pid)],
  ["started", t => when(t.start_time_ms)], ["duration", t => t.start_time_ms ? dur(t.start_time_ms, t.end_time_ms) : ""],
  ["error", t => esc(t.error_type)], ["pending reason", t => esc(t.pending_reason)],
], {extra: `<h3>Timeline <span class="muted">(last tasks; one row per worker)</span></h3><canvas id="timeline" height="220" data-testid="timeline"></canvas>
          <p><a href="/api/timeline" download="timeline.json">download as a Chrome trace</a></p>`,
    after: async () => drawTimeline(await api("/api/timeline"))});

function drawTimeline(events) {
  const cv = document.getElementById("timeline"); if (!cv) return;
  const spans = events.filter(e => e.ph === "X");
  const tracks = [...new Set(spans.map(e => `${e.pid}/${e.tid}`))].sort();
  const ratio = window.devicePixelRatio || 1, w = cv.clientWidth, h = Math.max(60, 20 + tracks.length * 16);
  cv.style.height = h + "px"; cv.width = w * ratio; cv.height = h * ratio;
  const g = cv.getContext("2d"); g.scale(ratio, ratio); g.clearRect(0, 0, w, h); g.font = "11px sans-serif";
  if (!spans.length) { g.fillStyle = "#6b7385"; g.fillText("no task has run yet", 10, 20); return; }
  const t0 = Math.min(...spans.map(e => e.ts)), t1 = Math.max(...spans.map(e => e.ts + e.dur));
  const left = 120, scale = (w - left - 10) / Math.max(1, t1 - t0);
  const colors = {good: "#1f9d55", terrible: "#d64545", rail_animation: "#2f6fde"};
  tracks.forEach((tr, i) => { g.fillStyle = "#6b7385"; g.fillText(tr.split("/")[1].slice(0, 16), 4, 16 + i * 16); });
  for (const e of spans) {
    const i = tracks.indexOf(`${e.pid}/${e.tid}`);
    g.fillStyle = colors[e.cname] || "#8a93a6";
    g.fillRect(left + (e.ts - t0) * scale, 6 + i * 16, Math.max(1, e.dur * scale), 12);
  }
  g.fillStyle = "#1d2330"; g.fillText(`${((t1 - t0) / 1e6).toFixed(2)} s`, w - 60, h - 4);
}

pages.objects = listingPage("objects", "Objects", [
  ["object id", o => `<span class="mono">${esc(o.object_id)}</span>`], ["size", o => bytes(o.object_size)],
  ["status", o => esc(o.task_status)], ["reference", o => esc(o.reference_type)], ["held by", o => esc(o.type)], ["pid", o => esc(o.pid)],
  ["node", o => `<span class="mono">${short(o.node_id)}</span>`], ["owner", o => `<span class="mono">${esc(o.owner_address || "")}</span>`],
], {extra: `<div class="cards" id="store-cards"></div>`, after: async () => {
  const c = await api("/api/cluster"); const s = c.store || {};
  const box = document.getElementById("store-cards"); if (!box) return;
  box.innerHTML = `<div class="card"><div class="k">store used (this node)</div><div class="v">${bytes(s.used)} / ${bytes(s.capacity)}</div>
    <div class="bar"><span style="width:${s.capacity ? (100 * s.used / s.capacity).toFixed(1) : 0}%"></span></div></div>
    <div class="card"><div class="k">objects in the store</div><div class="v">${esc(s.num_objects)}</div></div>
    <div class="card"><div class="k">spilled</div><div class="v">${esc(s.num_spilled ?? 0)}</div></div>`;
}});

pages.placement_groups = listingPage("placement_groups", "Placement groups", [
  ["id", p => `<span class="mono">${short(p.placement_group_id, 16)}</span>`], ["name", p => esc(p.name)],
  ["state", p => badge(p.state)], ["strategy", p => esc(p.strategy)], ["job", p => esc(p.creator_job_id)],
  ["bundles", p => (p.bundles || []).map(b => `${resources(b.unit_resources)} @ <span class="mono">${short(b.node_id, 8)}</span>`).join("<br>")],
  ["detached", p => esc(p.is_detached)],
]);

pages.serve = async function () {
  const s = await api("/api/serve");
  if (!s.running) {
    $main.innerHTML = `<h2>Serve</h2><p class="muted" data-testid="serve-none">No Serve instance runs on this cluster${s.error ? ` (${esc(s.error)})` : ""}; start one with <span class="mono">serve.run(app)</span> or <span class="mono">zray serve run module:app</span>.</p>`;
    return;
  }
  const rows = [];
  for (const [app, a] of Object.entries(s.applications || {}))
    for (const [dep, d] of Object.entries(a.deployments || {}))
      rows.push({app, status: a.status, dep, dstatus: d.status, replicas: d.replica_states, message: d.message || a.message});
  $main.innerHTML = `<h2>Serve</h2><h3>Applications and deployments</h3><div id="serve-apps"></div><h3>Proxies</h3><div id="serve-proxies"></div>`;
  document.getElementById("serve-apps").innerHTML = table([
    ["application", r => esc(r.app)], ["status", r => badge(r.status)], ["deployment", r => esc(r.dep)],
    ["deployment status", r => badge(r.dstatus)], ["replicas", r => esc(Object.entries(r.replicas || {}).map(([k, v]) => `${k}: ${v}`).join(", "))],
    ["message", r => esc(r.message)]], rows, {testid: "serve-table"});
  document.getElementById("serve-proxies").innerHTML = table([["node", p => `<span class="mono">${esc(p[0])}</span>`], ["status", p => badge(p[1])]],
    Object.entries(s.proxies || {}));
};

pages.jobs = async function (arg) {
  if (arg && arg.id) return jobDetail(arg.id);
  const data = await api("/api/dashboard/jobs");
  $main.innerHTML = `<h2>Jobs</h2><h3>Submitted jobs</h3><div id="subs"></div><h3>Drivers</h3><div id="drivers"></div>
    <p class="muted">Submit with <span class="mono">zray job submit -- python app.py</span> or Ray's JobSubmissionClient at this address.</p>`;
  const subs = document.getElementById("subs");
  subs.innerHTML = table([
    ["submission id", j => `<span class="mono">${esc(j.submission_id)}</span>`], ["status", j => badge(j.status)],
    ["entrypoint", j => `<span class="mono">${esc(j.entrypoint)}</span>`], ["job id", j => esc(j.job_id)],
    ["started", j => when(j.start_time)], ["duration", j => dur(j.start_time, j.end_time)], ["message", j => esc(j.message)],
  ], data.submissions, {testid: "jobs-table", onclick: j => { location.hash = `#jobs?id=${encodeURIComponent(j.submission_id)}`; }});
  bindRows(subs, data.submissions, j => { location.hash = `#jobs?id=${encodeURIComponent(j.submission_id)}`; });
  document.getElementById("drivers").innerHTML = table([
    ["job id", j => esc(j.job_id)], ["status", j => badge(j.status)], ["type", j => esc(j.type)],
    ["driver pid", j => esc(j.driver_pid)], ["node", j => `<span class="mono">${short(j.driver_node_id)}</span>`],
    ["started", j => when(j.start_time)], ["duration", j => dur(j.start_time, j.end_time)],
  ], data.drivers, {testid: "drivers-table"});
};

async function jobDetail(id) {
  const j = await api(`/api/jobs/${encodeURIComponent(id)}`);
  const logs = await api(`/api/jobs/${encodeURIComponent(id)}/logs`);
  const tasks = j.job_id ? await api(`/api/tasks?job_id=${encodeURIComponent(j.job_id)}&limit=100&counts=0`) : {rows: [], total: 0};
  const running = j.status === "RUNNING" || j.status === "PENDING";
  $main.innerHTML = `<h2>Job <span class="mono">${esc(j.submission_id)}</span> ${badge(j.status)}</h2>
    <p><a href="#jobs">‹ all jobs</a> ${running ? '<button id="stop">stop</button>' : ""}</p>
    <div class="cards"><div class="card"><div class="k">entrypoint</div><div class="mono">${esc(j.entrypoint)}</div></div>
      <div class="card"><div class="k">message</div><div>${esc(j.message)}</div></div>
      <div class="card"><div class="k">started / duration</div><div>${when(j.start_time)} / ${dur(j.start_time, j.end_time)}</div></div>
      <div class="card"><div class="k">exit code</div><div>${esc(j.driver_exit_code)}</div></div></div>
    <h3>Output</h3><pre class="log" data-testid="job-logs">${esc(logs.logs) || '<span class="muted">(nothing yet)</span>'}</pre>
    <h3>Tasks of this job (${esc(tasks.total)})</h3><div id="jobtasks"></div>`;
  document.getElementById("jobtasks").innerHTML = table([
    ["task id", t => `<span class="mono">${esc(t.task_id)}</span>`], ["name", t => esc(t.name)], ["state", t => badge(t.state)],
    ["duration", t => t.start_time_ms ? dur(t.start_time_ms, t.end_time_ms) : ""]], tasks.rows);
  const stop = document.getElementById("stop");
  if (stop) stop.onclick = async () => { stop.disabled = true; await fetch(`/api/jobs/${encodeURIComponent(id)}/stop`, {method: "POST"}); refresh(); };
  const pre = $main.querySelector("pre.log"); pre.scrollTop = pre.scrollHeight;
}

pages.logs = async function (arg) {
  const st = view.state.logs = view.state.logs || {};
  if (arg && arg.worker_id) { st.node = arg.node_id; st.file = `worker-${arg.worker_id}.out`; }
  const files = await api("/api/logs");
  const nodes = Object.keys(files).sort();
  if (!st.node || !files[st.node]) st.node = nodes[0];
  if (!document.getElementById("logs-page")) {
    $main.innerHTML = `<div id="logs-page"><h2>Logs</h2><div class="toolbar">node <select id="lognode"></select>
      <label><input type="checkbox" id="follow" checked> follow</label></div>
      <div class="split"><div class="filelist" id="files" data-testid="log-files"></div><div><div class="mono muted" id="logname"></div><pre class="log" id="logtext" data-testid="log-text"></pre></div></div></div>`;
    document.getElementById("lognode").onchange = e => { st.node = e.target.value; st.file = null; refresh(); };
  }
  const sel = document.getElementById("lognode");
  sel.innerHTML = nodes.map(n => `<option value="${esc(n)}" ${n === st.node ? "selected" : ""}>${short(n, 16)}</option>`).join("");
  const list = document.getElementById("files");
  const names = files[st.node] || [];
  list.innerHTML = names.map(n => `<div class="${n === st.file ? "on" : ""}" data-n="${esc(n)}">${esc(n)}</div>`).join("");
  list.querySelectorAll("div").forEach(d => d.onclick = () => { st.file = d.dataset.n; refresh(); });
  if (st.file && (document.getElementById("follow").checked || st.shown !== st.file)) {
    const t = await api(`/api/logs/file?node_id=${encodeURIComponent(st.node)}&name=${encodeURIComponent(st.file)}&lines=2000`).catch(e => ({text: String(e)}));
    const pre = document.getElementById("logtext");
    if (!pre) return;
    document.getElementById("logname").textContent = `${st.file} (${bytes(t.size)})`;
    pre.textContent = t.text; pre.scrollTop = pre.scrollHeight; st.shown = st.file;
  }
};

pages.metrics = async function () {
  const st = view.state.metrics = view.state.metrics || {};
  const data = await api("/api/metrics/history");
  const s = data.samples;
  if (!document.getElementById("metrics-page")) {
    $main.innerHTML = `<div id="metrics-page"><h2>Metrics <span class="muted">(this node, one sample every ${esc(data.interval_s)} s, the last hour)</span></h2>
      <div class="grid2"><div><h3>CPU (% of one core)</h3><canvas id="m-cpu" height="160"></canvas></div>
      <div><h3>Memory of the node's processes</h3><canvas id="m-mem" height="160"></canvas></div>
      <div><h3>Object store used</h3><canvas id="m-store" height="160"></canvas></div>
      <div><h3>Tasks finished per second</h3><canvas id="m-tps" height="160"></canvas></div></div>
      <p class="muted">Prometheus text: <a href="/metrics">/metrics</a></p></div>`;
  }
  chart("m-cpu", s, "cpu_percent", v => `${v.toFixed(0)}%`);
  chart("m-mem", s, "memory_bytes", bytes);
  chart("m-store", s, "store_used_bytes", bytes);
  chart("m-tps", s, "tasks_per_s", v => v.toFixed(1));
};

function chart(id, samples, key, fmt) {
  const cv = document.getElementById(id); if (!cv) return;
  const ratio = window.devicePixelRatio || 1, w = cv.clientWidth, h = 160;
  cv.width = w * ratio; cv.height = h * ratio; const g = cv.getContext("2d"); g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h); g.font = "11px sans-serif";
  const pts = samples.filter(p => p[key] !== undefined);
  if (pts.length < 2) { g.fillStyle = "#6b7385"; g.fillText("collecting…", 10, 20); return; }
  const t0 = pts[0].time, t1 = pts[pts.length - 1].time, max = Math.max(1e-9, ...pts.map(p => p[key]));
  const x = t => 50 + (t - t0) / Math.max(1e-9, t1 - t0) * (w - 60), y = v => h - 20 - v / max * (h - 35);
  g.strokeStyle = "#dde1e8"; g.beginPath(); g.moveTo(50, y(max)); g.lineTo(w - 10, y(max)); g.moveTo(50, y(0)); g.lineTo(w - 10, y(0)); g.stroke();
  g.fillStyle = "#6b7385"; g.fillText(fmt(max), 2, y(max) + 4); g.fillText(fmt(0), 2, y(0) + 4);
  g.fillText(new Date(t0 * 1000).toLocaleTimeString(), 50, h - 4); g.fillText(new Date(t1 * 1000).toLocaleTimeString(), w - 70, h - 4);
  g.strokeStyle = "#2f6fde"; g.lineWidth = 1.5; g.beginPath();
  pts.forEach((p, i) => i ? g.lineTo(x(p.time), y(p[key])) : g.moveTo(x(p.time), y(p[key]))); g.stroke();
}

pages.breakpoints = async function () {
  const bps = await api("/api/breakpoints");
  $main.innerHTML = `<h2>Paused breakpoints</h2><div id="bps"></div>
    <p class="muted">Attach with <span class="mono">zray debug</span> (or <span class="mono">zray debug ID</span>) from any host of the cluster; <span class="mono">c</span> continues the task.</p>`;
  document.getElementById("bps").innerHTML = table([
    ["id", b => `<span class="mono">${esc(b.breakpoint_id)}</span>`], ["kind", b => esc(b.post_mortem ? "post-mortem" : b.kind)],
    ["task / actor", b => esc(b.actor || b.task)], ["where", b => `<span class="mono">${esc(b.filename)}:${esc(b.lineno)}</span>`],
    ["pid", b => esc(b.pid)], ["node", b => `<span class="mono">${short(b.node_id)}</span>`], ["address", b => esc(`${b.host}:${b.port}`)],
    ["paused", b => dur(b.time * 1000)]], bps, {testid: "breakpoints-table"});
};

// -- routing and refresh -------------------------------------------------------------------------
function route() {
  const [name, query] = (location.hash.slice(1) || "cluster").split("?");
  return [pages[name] ? name : "cluster", Object.fromEntries(new URLSearchParams(query || ""))];
}
function okStatus() { $status.textContent = `updated ${new Date().toLocaleTimeString()}`; $status.className = "status"; }
function errStatus(e) { $status.textContent = `error: ${e.message}`; $status.className = "status err"; }
let busy = false, again = false;   // one refresh at a time; one asked meanwhile runs right after
async function refresh() {
  if (busy) { again = true; return; }
  busy = true; again = false;
  const [name, arg] = route();
  try {
    await pages[name](arg);
    okStatus();
  } catch (e) {
    errStatus(e);
    if (view.page === name && !$main.children.length) $main.innerHTML = `<p class="err">${esc(e.message)}</p>`;
  } finally {
    busy = false;
    if (again) refresh();
  }
}
function show() {
  const [name] = route();
  if (view.page !== name) { $main.innerHTML = '<p class="muted">Loading…</p>'; }
  view.page = name;
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.getAttribute("href") === `#${name}`));
  refresh();
}
window.addEventListener("hashchange", show);
setInterval(() => { if (document.visibilityState === "visible") refresh(); }, REFRESH_MS);
show();
