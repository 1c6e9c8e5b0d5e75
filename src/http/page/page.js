// The cluster page: reads /v1/cluster every second and draws it. Every
// text goes in through textContent, never as markup: node ids are tame,
// but error messages come from the network.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 1000;
// Data older than this (by the answering node's clock, or since our last
// successful read) is called stale.
const STALE_MS = 3000;
const READ_TIMEOUT_MS = 5000;

let lastOk = 0;
let lastError = "";
let reading = false;
let syncing = false;
// A failed "sync now" stays on the page until the next one, rather than
// giving way to an older report at the next refresh.
let syncFailed = false;
// The report "sync now" got stays until the cached view has caught up
// with it, rather than giving way to the report before it.
let pinnedUntil = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function ms(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a < 1000) return v + " ms";
  if (a < 120000) return (v / 1000).toFixed(1) + " s";
  return Math.round(v / 60000) + " min";
}

function show(v) {
  return v === null || v === undefined ? "" : String(v);
}

async function read() {
  if (reading) return;
  reading = true;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), READ_TIMEOUT_MS);
  try {
    const res = await fetch("/v1/cluster", { cache: "no-store", signal: abort.signal });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const view = await res.json();
    lastOk = Date.now();
    lastError = "";
    draw(view);
  } catch (e) {
    lastError = e && e.name === "AbortError" ? "no answer within 5 s" : String(e.message || e);
  } finally {
    clearTimeout(timer);
    reading = false;
    freshness();
  }
}

let servedAge = 0;

function freshness() {
  const p = document.getElementById("fresh");
  const since = lastOk ? Date.now() - lastOk : Infinity;
  const stale = since > STALE_MS || servedAge > STALE_MS || lastError !== "";
  p.dataset.stale = String(stale);
  p.className = stale ? "stale" : "";
  if (!lastOk) {
    p.textContent = lastError ? "cannot read /v1/cluster: " + lastError : "waiting for the first view\u2026";
  } else if (stale) {
    const age = Math.max(since, servedAge);
    p.textContent = "stale: this view is " + ms(age) + " old" + (lastError ? " (" + lastError + ")" : "");
  } else {
    p.textContent = "live: refreshed every second, " + ms(servedAge) + " old";
  }
}

function draw(view) {
  servedAge = view.age_ms || 0;
  document.getElementById("cluster").textContent =
    view.cluster + " \u00b7 " + view.schedule + " every " + ms(view.interval_ms) + " \u00b7 seen from " + view.node;
  drawRing(view);
  drawTable(view);
  drawSync(view);
}

function drawRing(view) {
  const box = document.getElementById("ring");
  box.replaceChildren();
  const nodes = view.nodes;
  const n = nodes.length;
  const R = 150;
  const r = Math.max(5, Math.min(18, (Math.PI * R) / Math.max(n, 1) * 0.55));
  const at = (pos, radius) => {
    const a = -Math.PI / 2 + (2 * Math.PI * pos) / n;
    return [radius * Math.cos(a), radius * Math.sin(a)];
  };
  const defs = svg("defs");
  const marker = svg("marker", {
    id: "head", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  });
  marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#555" }));
  defs.appendChild(marker);
  box.appendChild(defs);
  box.appendChild(svg("circle", { class: "orbit", r: R }));

  const byId = new Map(nodes.map((v) => [v.id, v]));
  let random = 0;
  for (const v of nodes) {
    if (v.pushes === "random") random++;
    const to = v.pushes_to && byId.get(v.pushes_to);
    if (!to) continue;
    const [x1, y1] = at(v.position, R);
    const [x2, y2] = at(to.position, R);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    const [dx, dy] = [(x2 - x1) / len, (y2 - y1) / len];
    const pad = r + 3;
    box.appendChild(svg("line", {
      class: "push", "marker-end": "url(#head)",
      "data-from": v.id, "data-to": to.id,
      x1: x1 + dx * pad, y1: y1 + dy * pad, x2: x2 - dx * pad, y2: y2 - dy * pad,
    }));
  }

  const small = n > 24;
  for (const v of nodes) {
    const [x, y] = at(v.position, R);
    const g = svg("g", {
      class: "node", "data-node": v.id, "data-state": v.state,
      "data-agrees": String(v.root_agrees), "data-reachable": String(v.reachable),
    });
    g.appendChild(svg("title", {}, v.id + ": " + v.state + (v.error ? " (" + v.error + ")" : "")));
    if (v.root_agrees) g.appendChild(svg("circle", { class: "halo", cx: x, cy: y, r: r + 4 }));
    g.appendChild(svg("circle", { class: "state-" + v.state, cx: x, cy: y, r: r }));
    if (!small) {
      g.appendChild(svg("text", { class: "pos", x: x, y: y + 4, "text-anchor": "middle" }, v.position));
      const [lx, ly] = at(v.position, R + r + 22);
      const anchor = Math.abs(lx) < 20 ? "middle" : lx > 0 ? "start" : "end";
      const lines = [[v.id, "label"], [v.state, "state"]];
      if (v.pushes === "random") lines.push(["\u2192 random", "state"]);
      // Above the circle the lines stack upwards, so as not to cover it.
      const top = ly < -R / 2 ? ly - 13 * (lines.length - 1) : ly + 4;
      lines.forEach(([text, cls], k) => {
        g.appendChild(svg("text", { class: cls, x: lx, y: top + 13 * k, "text-anchor": anchor }, text));
      });
    }
    box.appendChild(g);
  }

  const agree = view.roots_agree ? "roots agree" : "roots differ";
  box.appendChild(svg("text", { class: "middle", x: 0, y: -6, "text-anchor": "middle" },
    view.reachable + " of " + n + " reachable"));
  box.appendChild(svg("text", { class: "middle", x: 0, y: 10, "text-anchor": "middle" }, agree));
  if (random) {
    box.appendChild(svg("text", { class: "middle", x: 0, y: 26, "text-anchor": "middle" },
      random + " pushing to random peers"));
  }
  const counts = {};
  for (const v of nodes) counts[v.state] = (counts[v.state] || 0) + 1;
  const parts = Object.entries(counts).map(([s, c]) => c + " " + s);
  const summary = document.getElementById("summary");
  const stale = nodes.map((v) => v.staleness_ms).filter((s) => s !== null && s !== undefined);
  const worst = stale.length ? " Worst staleness: " + ms(Math.max(...stale)) + "." : "";
  summary.textContent = parts.join(", ") + "; " + agree +
    (view.roots_agree ? " among the " + view.reachable + " reachable" : "") + "." + worst;
  summary.dataset.rootsAgree = String(view.roots_agree);
}

function cell(tr, text, cls) {
  const td = el("td", cls ? { class: cls } : {}, text);
  tr.appendChild(td);
  return td;
}

function drawTable(view) {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const v of view.nodes) {
    const tr = el("tr", { "data-node": v.id, "data-state": v.state, "data-mode-since": show(v.mode_since_cycle) });
    const who = cell(tr, v.id);
    who.appendChild(el("span", { class: "why mono" }, v.addr));
    cell(tr, v.position, "num");
    const st = cell(tr, "");
    st.appendChild(el("span", { class: "tag state-" + v.state }, v.state));
    if (v.held_by.length) st.appendChild(el("span", { class: "why" }, "held so by " + v.held_by.join(", ")));
    const mode = cell(tr, v.reachable ? show(v.mode) : "unreachable");
    const since = v.mode_since_cycle ? " (since cycle " + v.mode_since_cycle + ")" : "";
    const why = v.reachable ? v.mode_reason + since : v.error;
    mode.appendChild(el("span", { class: "why" }, why));
    cell(tr, show(v.cycle), "num");
    cell(tr, ms(v.cycle_age_ms), "num");
    cell(tr, show(v.keys), "num");
    cell(tr, show(v.tombstones), "num");
    const root = cell(tr, show(v.digest_root), "mono");
    if (v.reachable && !v.root_agrees) {
      root.classList.add("differs");
      root.appendChild(el("span", { class: "why" }, "differs"));
    }
    cell(tr, show(v.relay_queue), "num");
    cell(tr, ms(v.staleness_ms), "num");
    const skew = v.clock_skew_ms === null ? "" : (v.clock_skew_ms > 0 ? "+" : "") + ms(v.clock_skew_ms);
    const sk = cell(tr, skew, "num");
    if (v.round_trip_ms !== null) sk.appendChild(el("span", { class: "why" }, "\u00b1" + ms(Math.ceil(v.round_trip_ms / 2))));
    cell(tr, v.pushes === "random" ? "random" : show(v.pushes_to));
    cell(tr, v.epoch === null || v.epoch === undefined ? "" : JSON.stringify(v.epoch), "mono");
    body.appendChild(tr);
  }
}

function drawSync(view) {
  const button = document.getElementById("sync-now");
  const how = document.getElementById("sync-how");
  button.hidden = !view.sync_from_browser;
  button.disabled = syncing;
  if (view.sync_from_browser) {
    how.textContent = "Runs POST /v1/sync on " + view.node + " and shows its report.";
  } else {
    how.replaceChildren(
      "This cluster signs its sync requests, so a browser cannot start one. From a shell with the cluster secret: ",
      el("code", {}, "RINGSYNC_SECRET_FILE=/path/to/secret ringsync sync --node " + location.origin));
  }
  if (!syncing && !syncFailed && Date.now() >= pinnedUntil && view.last_sync) drawReport(view.last_sync);
}

function drawReport(r) {
  const box = document.getElementById("sync-report");
  box.replaceChildren();
  if (r.state === "running") {
    box.appendChild(el("p", {}, "sync " + r.id + " by " + r.coordinator + " is running\u2026"));
    return;
  }
  const verdict = r.converged ? "converged" :
    r.reachable_agree ? "the reachable nodes agree, but not every node answered" : "did not converge";
  const p = el("p", { "data-converged": String(r.converged) },
    "sync " + r.id + " by " + r.coordinator + ": " + r.mode + ", " + r.hops + " hops (" +
    r.failed_hops + " failed), " + r.entries + " entries, " + r.bytes + " bytes, " +
    ms(r.duration_ms) + ": " + verdict + ".");
  box.appendChild(p);
  if (r.unreachable.length) box.appendChild(el("p", {}, "unreachable: " + r.unreachable.join(", ")));
  const t = el("table");
  t.appendChild(el("tr")).append(el("th", {}, "node"), el("th", {}, "root"), el("th", {}, "keys"), el("th", {}, "tombs"));
  for (const d of r.nodes) {
    const tr = el("tr");
    tr.append(el("td", {}, d.id), el("td", { class: "mono" }, d.root),
      el("td", { class: "num" }, d.keys), el("td", { class: "num" }, d.tombstones));
    t.appendChild(tr);
  }
  box.appendChild(t);
}

async function syncNow() {
  const box = document.getElementById("sync-report");
  const button = document.getElementById("sync-now");
  syncing = true;
  syncFailed = false;
  button.disabled = true;
  box.replaceChildren(el("p", {}, "syncing\u2026"));
  try {
    const res = await fetch("/v1/sync", { method: "POST", cache: "no-store" });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error("HTTP " + res.status + (body.error ? ": " + body.error : ""));
    drawReport(body);
    pinnedUntil = Date.now() + 3 * REFRESH_MS;
  } catch (e) {
    syncFailed = true;
    box.replaceChildren(el("p", { class: "differs" }, "the sync failed: " + (e.message || e)));
  } finally {
    syncing = false;
    button.disabled = false;
  }
}

document.getElementById("sync-now").addEventListener("click", syncNow);
read();
setInterval(() => { read(); freshness(); }, REFRESH_MS);
