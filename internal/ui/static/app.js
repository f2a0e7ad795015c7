// Concord dashboard: polls this node's /api endpoints once a second and
// draws tables and SVG charts. No dependencies.
"use strict";

const POLL_MS = 1000;
const MAX_POINTS = 120;
const SVG = "http://www.w3.org/2000/svg";

const state = {
  lastEvent: 0,
  events: [],
  applied: [], // {t, v}: cluster Raft entries applied per second
  prevApplied: null,
  demo: false,
  busy: false,
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}

function nodeStatus(n) {
  if (n.stopped) return "stopped";
  if (!n.up) return "down";
  if (n.isolated) return "isolated";
  return "up";
}

async function fault(action, node) {
  state.busy = true;
  try {
    const r = await fetch("/api/fault", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action, node }) });
    if (!r.ok) alert(action + " node " + node + ": " + (await r.text()));
  } catch (e) {
    alert(action + " node " + node + ": " + e);
  } finally {
    state.busy = false;
    poll();
  }
}

function renderNodes(view) {
  const tb = document.querySelector("#nodes tbody");
  tb.replaceChildren();
  for (const n of view.nodes || []) {
    const st = nodeStatus(n);
    const tr = el("tr", { "data-node": n.id, "data-status": st });
    tr.append(
      el("td", {}, n.id + (n.id === view.self ? " (this)" : "")),
      el("td", {}, n.name),
      el("td", { class: "status " + st }, st),
      el("td", {}, n.peer_url || ""),
      el("td", {}, (n.client_urls || []).join(", ")),
      el("td", {}, n.up ? n.ranges : "–"),
      el("td", { class: "leaders" }, n.up ? n.leaders : "–"),
      el("td", { class: "awake" }, n.up ? n.awake : "–"),
      el("td", {}, n.up ? bytes(n.db_size_bytes) : "–"),
    );
    const f = el("td", { class: "demo-only" });
    if (view.demo) {
      const b = (action, label, disabled) => {
        const btn = el("button", { "data-action": action, "data-node": n.id, disabled: disabled || state.busy }, label);
        btn.addEventListener("click", () => fault(action, n.id));
        return btn;
      };
      f.append(n.stopped ? b("restart", "restart") : b("stop", "stop"));
      f.append(n.isolated ? b("heal", "heal", n.stopped) : b("isolate", "isolate", n.stopped));
      if (n.http_url && n.id !== view.self && !n.stopped) f.append(el("a", { href: n.http_url }, "open"));
    }
    tr.append(f);
    tb.append(tr);
  }
}

function renderRanges(view) {
  const tb = document.querySelector("#ranges tbody");
  tb.replaceChildren();
  for (const r of view.ranges || []) {
    const applied = Object.entries(r.applied || {}).map(([n, i]) => n + ": " + i).join("  ");
    tb.append(el("tr", { "data-range": r.id, "data-leader": r.leader || 0 },
      el("td", {}, r.id),
      el("td", {}, (r.start || "") + " – " + (r.end || "")),
      el("td", {}, (r.replicas || []).join(", ")),
      el("td", { class: "leader" }, r.leader ? "node " + r.leader : "none"),
      el("td", {}, r.term),
      el("td", {}, r.commit),
      el("td", {}, applied),
    ));
  }
}

function trackApplied(view) {
  let total = 0;
  for (const r of view.ranges || []) total += Math.max(0, ...Object.values(r.applied || {}));
  const t = Date.parse(view.time);
  if (state.prevApplied && t > state.prevApplied.t) {
    const rate = Math.max(0, (total - state.prevApplied.v) / ((t - state.prevApplied.t) / 1000));
    state.applied.push({ t, v: rate });
    if (state.applied.length > MAX_POINTS) state.applied.shift();
  }
  state.prevApplied = { t, v: total };
}

// chart draws series (arrays of {t, v}) as polylines with a y grid.
function chart(svg, series, labels) {
  const W = 600, H = 180, L = 44, B = 18, T = 8;
  svg.replaceChildren();
  const all = series.flat();
  const maxV = Math.max(1, ...all.map(p => p.v)) * 1.1;
  const t1 = Date.now(), t0 = t1 - MAX_POINTS * POLL_MS;
  const x = t => L + (W - L - 4) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - v / maxV);
  for (let i = 0; i <= 4; i++) {
    const v = maxV * i / 4, yy = y(v);
    const line = document.createElementNS(SVG, "line");
    Object.entries({ x1: L, x2: W, y1: yy, y2: yy, class: "grid" }).forEach(([k, val]) => line.setAttribute(k, val));
    const txt = document.createElementNS(SVG, "text");
    Object.entries({ x: 2, y: yy + 4, class: "axis" }).forEach(([k, val]) => txt.setAttribute(k, val));
    txt.textContent = v >= 100 ? v.toFixed(0) : v.toFixed(1);
    svg.append(line, txt);
  }
  series.forEach((s, i) => {
    const pl = document.createElementNS(SVG, "polyline");
    pl.setAttribute("class", "s" + i);
    pl.setAttribute("points", s.filter(p => p.t >= t0).map(p => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" "));
    const lg = document.createElementNS(SVG, "text");
    Object.entries({ x: L + 8 + i * 170, y: H - 4, class: "legend" + i }).forEach(([k, val]) => lg.setAttribute(k, val));
    const last = s.length ? s[s.length - 1].v : 0;
    lg.textContent = labels[i] + ": " + (last >= 100 ? last.toFixed(0) : last.toFixed(1));
    svg.append(pl, lg);
  });
}

function renderEvents(evs) {
  for (const e of evs) {
    state.lastEvent = Math.max(state.lastEvent, e.seq);
    state.events.unshift(e);
  }
  state.events = state.events.slice(0, 200);
  const ul = document.querySelector("#events");
  ul.replaceChildren(...state.events.map(e =>
    el("li", { class: "kind-" + e.kind, "data-kind": e.kind }, new Date(e.time).toLocaleTimeString() + "  " + e.message)));
}

function showDown(err, view) {
  const banner = document.querySelector("#banner");
  banner.replaceChildren("This node does not answer (" + err.message + ").");
  if (view && view.nodes) {
    for (const n of view.nodes) {
      if (n.http_url && n.id !== view.self) { banner.append(" ", el("a", { href: n.http_url }, "open node " + n.id)); }
    }
  }
  banner.hidden = false;
}

let lastView = null;

async function poll() {
  try {
    const [view, stats, evs] = await Promise.all([
      getJSON("/api/cluster"), getJSON("/api/stats"), getJSON("/api/events?after=" + state.lastEvent)]);
    lastView = view;
    document.querySelector("#banner").hidden = true;
    document.body.classList.toggle("demo", !!view.demo);
    document.querySelector("#self").textContent = "node " + view.self;
    document.querySelector("#status").textContent = "updated " + new Date(view.time).toLocaleTimeString();
    renderNodes(view);
    renderRanges(view);
    trackApplied(view);
    const pts = (stats.points || []).map(p => ({ t: Date.parse(p.time), rps: p.requests_per_sec, p50: p.p50_ms, p99: p.p99_ms }));
    chart(document.querySelector("#chart-throughput"), [pts.map(p => ({ t: p.t, v: p.rps })), state.applied], ["requests/s", "applied/s"]);
    chart(document.querySelector("#chart-latency"), [pts.map(p => ({ t: p.t, v: p.p50 })), pts.map(p => ({ t: p.t, v: p.p99 }))], ["p50 ms", "p99 ms"]);
    renderEvents(evs);
  } catch (e) {
    showDown(e, lastView);
  }
}

poll();
setInterval(poll, POLL_MS);
