// multiswarm dashboard: polls the JSON API once a second and redraws, no page reload. The next
// poll is armed only once a refresh has settled, so a slow API (Redis away: each reply takes
// seconds) never has more than one refresh (5 requests) of a tab outstanding.
// Credentials: the HttpOnly cookie set by POST /login (the page never sees the token again).
"use strict";

const API = "/api/v1";
const POLL_MS = 1000;
const SPARK_POINTS = 60;
const TERMINAL = new Set(["completed", "dead", "cancelled"]);

let role = null;
let polling = false; // signed in: the poll loop runs
let timer = null; // the next poll, armed once the previous refresh settled
let running = null; // the refresh in flight (at most one)
let again = false; // a refresh was asked for while one ran: one more once it settles
let history = []; // [{t: ms, completed: n}], newest last

const $ = (sel) => document.querySelector(sel);

async function call(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const err = new Error((data && data.detail) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await onClick(); await refresh(); } catch (e) { showError(e.message); }
    b.disabled = false;
  });
  return b;
}

function fill(tableId, items, draw) {
  const body = document.querySelector(`#${tableId} tbody`);
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    draw(tr, item);
    return tr;
  });
  body.replaceChildren(...rows);
}

function ago(ms) {
  return ms < 1000 ? `${ms} ms ago` : `${(ms / 1000).toFixed(1)} s ago`;
}

function canWrite() { return role === "admin" || role === "open"; }

function drawStatus(st) {
  $("#namespace").textContent = `namespace ${st.namespace}`;
  const ld = st.leader;
  $("#leader").textContent = ld ? ld.holder : "nobody";
  $("#epoch").textContent = ld ? ld.epoch : "–";
  $("#lease").textContent = ld ? `${(ld.lease_ms_left / 1000).toFixed(1)} s left` : "vacant";
  const counts = $("#counts");
  const entries = Object.entries(st.tasks);
  counts.replaceChildren(...entries.flatMap(([status, n]) => {
    const dt = document.createElement("dt");
    dt.textContent = status;
    const dd = document.createElement("dd");
    dd.id = `count-${status}`;
    dd.textContent = n;
    return [dt, dd];
  }));
  fill("swarms", st.swarms, (tr, s) => {
    tr.dataset.swarm = s.id;
    const shown = s.paused ? "paused" : s.status;
    cell(tr, s.id);
    cell(tr, shown, `status status-${shown}`);
    cell(tr, s.capabilities.join(", "));
    cell(tr, `${s.active} / ${s.capacity}`, "num");
    cell(tr, s.hosts.join(", "));
    const td = cell(tr, "");
    if (canWrite() && s.status === "active") {
      const verb = s.paused ? "resume" : "pause";
      const b = button(verb, () => call("POST", `${API}/swarms/${encodeURIComponent(s.id)}/${verb}`));
      b.className = "toggle-pause";
      td.appendChild(b);
    }
  });
  const completed = (st.counters && st.counters.completed) || 0;
  $("#completed-total").textContent = completed;
  history.push({ t: Date.now(), completed });
  if (history.length > SPARK_POINTS + 1) history.shift();
  drawSpark();
}

function drawSpark() {
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = (history[i].t - history[i - 1].t) / 1000;
    rates.push(dt > 0 ? Math.max(0, history[i].completed - history[i - 1].completed) / dt : 0);
  }
  const now = rates.length ? rates[rates.length - 1] : 0;
  // the window before the page opened reads as zero, so the line always spans the chart
  while (rates.length < SPARK_POINTS - 1) rates.unshift(0);
  const top = Math.max(1, ...rates);
  const step = 300 / (SPARK_POINTS - 2);
  $("#spark").setAttribute("points", rates.map((r, i) =>
    `${(i * step).toFixed(1)},${(58 - (r / top) * 56).toFixed(1)}`).join(" "));
  $("#rate").textContent = now.toFixed(1);
}

function drawWorkers(st, agents) {
  const byWorker = {};
  for (const a of agents) (byWorker[a.worker] = byWorker[a.worker] || []).push(a);
  fill("workers", st.workers, (tr, w) => {
    tr.dataset.worker = w.id;
    cell(tr, w.id);
    cell(tr, `${w.host} / ${w.pid}`);
    cell(tr, w.swarms.join(", "));
    cell(tr, w.running, "num");
    cell(tr, ago(w.beat_ms_ago));
    const td = cell(tr, "");
    for (const a of byWorker[w.id] || []) {
      const span = document.createElement("span");
      span.className = `agent health-${a.stale ? "dead" : a.health}`;
      span.title = `${a.swarm || ""} ${a.kind || ""} ${a.state || ""}, restarts ${a.restarts}`;
      span.textContent = `${a.agent} (${a.stale ? "stale" : a.health}) `;
      td.appendChild(span);
    }
  });
}

function drawTasks(tasks) {
  fill("tasks", tasks, (tr, t) => {
    tr.dataset.task = t.id;
    cell(tr, t.id);
    cell(tr, t.handler);
    cell(tr, t.status, `status status-${t.status}`);
    cell(tr, t.swarm);
    cell(tr, t.attempts, "num");
    // the handler's latest ctx.progress report (decision 128), none before its first
    cell(tr, t.progress_ms ? `${Math.round(t.progress * 100)}% ${t.progress_note}`.trim() : "");
    const td = cell(tr, "");
    if (canWrite() && !TERMINAL.has(t.status)) {
      const b = button("cancel", () =>
        call("POST", `${API}/tasks/${encodeURIComponent(t.id)}/cancel`, {}));
      b.className = "cancel";
      td.appendChild(b);
    }
  });
}

function drawDead(tasks) {
  fill("dead-letters", tasks, (tr, t) => {
    cell(tr, t.id);
    cell(tr, t.reason);
    // a handler's error is its traceback: show the last line, the whole on hover
    const lines = (t.error || "").trim().split("\n");
    cell(tr, lines[lines.length - 1]).title = t.error || "";
  });
}

function drawBreakers(breakers) {
  fill("breakers", breakers, (tr, b) => {
    tr.dataset.breaker = b.name;
    cell(tr, b.name);
    cell(tr, b.state, `state state-${b.state}`);
    cell(tr, b.failures, "num");
    cell(tr, b.opens, "num");
    const td = cell(tr, "");
    if (canWrite() && b.state !== "closed") {
      td.appendChild(button("reset", () =>
        call("POST", `${API}/breakers/${encodeURIComponent(b.name)}/reset`)));
    }
  });
}

// Refresh now, or, when a refresh is in flight, once it settles (a button's action must show):
// the promise settles when the board shows the latest state.
function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    try {
      do {
        again = false;
        await load();
      } while (again && polling);
    } finally {
      running = null;
    }
  })();
  return running;
}

function arm() {
  if (polling && timer === null) timer = setTimeout(poll, POLL_MS);
}

function poll() {
  timer = null;
  refresh().finally(arm);
}

async function load() {
  if (document.hidden) return; // a background tab costs the API nothing
  try {
    const [st, agents, tasks, dead, breakers] = await Promise.all([
      call("GET", `${API}/status`),
      call("GET", `${API}/agents`),
      call("GET", `${API}/tasks?limit=15`),
      call("GET", `${API}/tasks?status=dead&limit=10`),
      call("GET", `${API}/breakers`),
    ]);
    drawStatus(st);
    drawWorkers(st, agents);
    drawTasks(tasks);
    drawDead(dead);
    drawBreakers(breakers);
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError("");
  } catch (e) {
    if (e.status === 401) return signedOut();
    showError(`cannot refresh: ${e.message}`);
  }
}

function signedOut() {
  polling = false;
  clearTimeout(timer);
  timer = null;
  $("#board").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#token").focus();
}

async function start() {
  try {
    const me = await call("GET", `${API}/whoami`);
    role = me.role;
    $("#role").textContent = role === "open" ? "no auth (loopback)" : role;
    $("#logout").hidden = !me.auth_required;
  } catch (e) {
    if (e.status === 401) return signedOut();
    showError(`cannot reach the API: ${e.message}`);
    return;
  }
  $("#login").hidden = true;
  $("#board").hidden = false;
  polling = true;
  await refresh();
  arm();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await call("POST", "/login", { token: $("#token").value });
    $("#token").value = "";
    $("#login-error").textContent = "";
    await start();
  } catch (e) {
    $("#login-error").textContent = e.status === 401 ? "wrong token" : e.message;
  }
});

$("#logout").addEventListener("click", async () => {
  await call("POST", "/logout");
  role = null;
  signedOut();
});

document.addEventListener("visibilitychange", () => { if (!document.hidden && polling) refresh(); });

start();
