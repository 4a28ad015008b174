// brokerbench live: renders the server's state (server-sent events) and sends whitelisted actions.
// No libraries: the chart is a small SVG drawn here, so the page works offline.
"use strict";
const TOKEN = document.body.dataset.token;
const TEACHER = document.body.dataset.role === "teacher";  // the read-only (students') page has no buttons
const QUERY = "?token=" + encodeURIComponent(TOKEN);
const COLOURS = { redis: "#D55E00", rabbitmq: "#0072B2" };
const QUEUE_ROWS = {
  redis: [["waiting", "wait"], ["prioritized", "prioritized"], ["active", "active"], ["delayed", "delayed"],
          ["completed", "completed"], ["failed", "failed"]],
  rabbitmq: [["waiting", "ready"], ["unacked", "unacked (rabbitmqctl)"], ["delayed", "in delay queues"],
             ["dead_letter", "dead-letter queue"]],
};
const COUNT_ROWS = [["in_per_s", "accepted/s", 0], ["out_per_s", "finished/s", 0], ["p50_ms", "p50 ms (5 s)", 1],
  ["p99_ms", "p99 ms (5 s)", 1], ["latency_n", "runs in those 5 s (n)", 0], ["consumers_alive", "workers alive", 0],
  ["accepted", "accepted", 0],
  ["ran", "runs", 0], ["redelivered", "redelivered", 0], ["duplicated", "ran twice", 0], ["lost", "lost", 0],
  ["dead_lettered", "dead-lettered", 0], ["refused", "refused", 0], ["in_doubt", "in doubt", 0],
  ["doubt_ran", "in doubt, ran since", 0], ["waiting_to_run", "accepted, not yet run", 0]];
const NUMBERS = ["rate", "consumers", "concurrency", "lock_s", "time_scale"];
const sides = {};
let last = null;

function say(text, error) {
  const el = document.getElementById("said");
  el.textContent = text;
  el.className = error ? "error" : "";
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// A percentile the server left out (too few runs in its window for it: p99 needs 1,000) says so.
function countText(c, key, digits) {
  if (key.endsWith("_ms") && (c[key] === null || c[key] === undefined) && c.latency_n) return "n too small";
  return fmt(c[key], digits);
}

function loadSettings() {
  const out = {};
  for (const id of ["rate", "profile", "consumers", "concurrency", "lock_s", "time_scale"]) {
    const value = document.getElementById(id).value;
    out[id] = NUMBERS.includes(id) && value.trim() !== "" && !isNaN(Number(value)) ? Number(value) : value;
  }
  return out;
}

let busy = false;
function setBusy(on) {  // one action at a time: the server refuses a second one while the first runs
  busy = on;
  for (const b of document.querySelectorAll("button[data-action]")) b.classList.toggle("busy", on);
}

async function act(action, params) {
  if (busy) { say("still waiting for the last action…", true); return; }
  const body = Object.assign({ action: action }, params || {});
  if (action === "start_load") Object.assign(body, loadSettings());
  say(action.replace("_", " ") + "…");
  setBusy(true);
  try {
    const r = await fetch("/api/action", { method: "POST", headers: { "Content-Type": "application/json", "X-Token": TOKEN },
                                          body: JSON.stringify(body) });
    const answer = await r.json();
    if (!r.ok) { say(answer.error || ("error " + r.status), true); return; }
    say(Object.entries(answer.done).map(([k, v]) => k + ": " + v).join(" · "));
  } catch (e) { say(String(e), true); } finally { setBusy(false); }
}

function buildSide(kind, state) {
  const node = document.getElementById("side-template").content.firstElementChild.cloneNode(true);
  node.id = "side-" + kind;
  node.dataset.kind = kind;
  node.style.setProperty("--colour", COLOURS[kind] || "#555");
  node.querySelector(".label").textContent = state.label || kind;
  const select = node.querySelector(".profile-select");
  if (select) {
    for (const p of state.profiles || []) { const o = document.createElement("option"); o.textContent = p; select.append(o); }
  }
  if (TEACHER) {
    select.value = state.profile;
    node.querySelector(".kill-worker-one").onclick = () => act("kill_worker", { side: kind });
    node.querySelector(".kill-broker").onclick = () => act("kill_broker", { side: kind });
    node.querySelector(".set-profile").onclick = () => act("set_profile", { side: kind, profiles: { [kind]: select.value } });
  }
  if (TEACHER && kind === "redis") {
    const b = node.querySelector(".job-keys");
    b.hidden = false;
    b.onclick = async () => {
      const pre = node.querySelector(".job");
      const r = await fetch("/api/job/" + kind + QUERY);
      pre.textContent = JSON.stringify(await r.json(), null, 1);
      pre.hidden = false;
    };
  }
  document.getElementById("sides").append(node);
  sides[kind] = { node: node, seen: 0 };
  return sides[kind];
}

function table(tbody, rows) {
  tbody.replaceChildren(...rows.map(([name, value, key]) => {
    const tr = document.createElement("tr");
    if (key) tr.dataset.key = key;
    const a = document.createElement("td"); a.textContent = name;
    const b = document.createElement("td"); b.className = "v"; b.textContent = value;
    tr.append(a, b);
    return tr;
  }));
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(el, history, markers, now, scale) {
  // The window grows with the session, from 30 s to the last 120 s.
  const first = history.length ? history[0].t : now;
  const span = Math.min(120, Math.max(30, now - first));
  const W = 600, H = 220, left = 36, bottom = 18;
  const t0 = Math.max(0, now - span);
  const x = (t) => left + (t - t0) / span * (W - left - 4);
  const y = (v) => H - bottom - (v / scale.rate) * (H - bottom - 8);
  const yb = (v) => H - bottom - (v / scale.backlog) * (H - bottom - 8);
  const line = (key, f) => history.filter((p) => p[key] !== null && p[key] !== undefined && p.t >= t0)
    .map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + f(p[key]).toFixed(1)).join("");
  const parts = [svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#bbb" }),
    svg("text", { x: 2, y: 12, class: "axis" }, fmt(scale.rate, 0) + "/s"),
    svg("text", { x: 2, y: H - bottom, class: "axis" }, "0"),
    svg("text", { x: W - 120, y: 12, class: "axis" }, "waiting max " + fmt(scale.backlog, 0)),
    svg("text", { x: left, y: H - 4, class: "axis" }, "last " + Math.round(span) + " s")];
  parts.push(svg("path", { d: line("in", y), class: "in" }), svg("path", { d: line("out", y), class: "out" }),
             svg("path", { d: line("backlog", yb), class: "backlog" }));
  for (const m of markers) {
    if (m.t < t0) continue;
    const g = svg("g", { class: "marker", "data-n": m.n });
    g.append(svg("line", { x1: x(m.t), x2: x(m.t), y1: 8, y2: H - bottom }),
             svg("text", { x: x(m.t) + 2, y: 20 + (m.n % 8) * 12 }, String(m.n)));
    g.append(svg("title", {}, m.text));
    parts.push(g);
  }
  el.replaceChildren(...parts);
}

function render(state) {
  last = state;
  document.getElementById("clock").textContent = "t = " + fmt(state.t, 0) + " s";
  let rate = 10, backlog = 10;
  for (const s of Object.values(state.sides)) for (const p of s.history || []) {
    rate = Math.max(rate, p.in || 0, p.out || 0);
    backlog = Math.max(backlog, p.backlog || 0);
  }
  const scale = { rate: rate * 1.1, backlog: backlog * 1.1 };  // the same scales in both columns
  for (const [kind, s] of Object.entries(state.sides)) {
    const side = sides[kind] || buildSide(kind, s);
    const node = side.node;
    node.querySelector(".profile").textContent = "(" + s.profile + (s.shared ? ", shared broker" : ", private broker") + ")";
    node.querySelector(".promise").textContent = (s.broker_down ? "BROKER DOWN · " : "") + (s.promise || "");
    if (TEACHER) {
      node.querySelector(".kill-broker").disabled = !!s.shared;
      node.querySelector(".set-profile").disabled = !!s.shared;
      for (const b of document.querySelectorAll('button[data-action="drop_connections"]')) b.disabled = !!s.shared;
    }
    const q = s.queue || {};
    const qrows = q.error ? [["cannot read", q.error]] :
      (QUEUE_ROWS[kind] || Object.keys(q).map((k) => [k, k])).map(([key, name]) => [name, fmt(q[key], 0), key]);
    table(node.querySelector(".queue tbody"), qrows);
    const c = Object.assign({}, s.counts || {}, { consumers_alive: s.consumers_alive });
    table(node.querySelector(".counts tbody"), COUNT_ROWS.map(([key, name, d]) => [name, countText(c, key, d), key]));
    const mine = state.markers.filter((m) => m.side === kind);
    drawChart(node.querySelector(".chart"), s.history || [], mine, state.t, scale);
    const list = node.querySelector(".markers");
    for (const m of mine) {
      if (m.n <= side.seen) continue;
      const li = document.createElement("li");
      li.value = m.n;
      li.className = "new";
      li.dataset.n = m.n;
      li.textContent = "t=" + fmt(m.t, 1) + " s · " + m.text;
      list.prepend(li);
      side.seen = m.n;
      setTimeout(() => li.classList.remove("new"), 3000);
    }
  }
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/api/events" + QUERY);
  source.onopen = () => { status.textContent = "live"; status.className = "status ok"; };
  source.onmessage = (e) => render(JSON.parse(e.data));
  source.onerror = () => { status.textContent = "disconnected: retrying"; status.className = "status bad"; };
}

for (const b of document.querySelectorAll("#controls button[data-action]")) {
  b.onclick = () => act(b.dataset.action, b.dataset.what ? { what: b.dataset.what } : {});
}
document.getElementById("role").textContent = TEACHER ? "" : "read-only view";
connect();
