// Flotilla's dashboard: one live stream of snapshots (server-sent events read through fetch, so the
// token travels in a header, never in a URL), a chart per group, and the operator's controls.
"use strict";

const API = "/api/v1";
// What the chart shows: `?window=2m` in the address (the demo's link) or the last choice, else 15 min.
const WINDOWS = { "2m": 2 * 60_000, "15m": 15 * 60_000, "1h": 3_600_000, "6h": 6 * 3_600_000 };
const LONGEST = WINDOWS["6h"];
const KEY = "flotilla.token";

const state = {
  token: sessionStorage.getItem(KEY) || "",
  groups: new Map(), // name -> {el, history: [{at, value, size}], seeded}
  retryMs: 1000,
  abort: null,
  window: [new URLSearchParams(location.search).get("window"), localStorage.getItem("flotilla.window"), "15m"]
    .find((w) => w in WINDOWS),
};
const windowMs = () => WINDOWS[state.window];

// A token handed over in the URL's fragment (`#token=...`, what `flotilla demo` prints) is taken
// once and removed from the address bar; the fragment never reaches the server.
(function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    state.token = decodeURIComponent(m[1]);
    sessionStorage.setItem(KEY, state.token);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
const count = (n) => (n === 1 ? "1 member" : `${n} members`);
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (state.token) h.Authorization = "Bearer " + state.token;
  return h;
}

function toast(text, bad = false) {
  const t = $("#toast");
  t.textContent = text;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), bad ? 6000 : 3000);
}

function setConn(s, text) {
  const c = $("#conn");
  c.dataset.state = s;
  c.textContent = text || s;
}

// ---- the live stream -------------------------------------------------------------------------

async function connect() {
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  setConn("connecting");
  let res;
  try {
    res = await fetch(API + "/stream", { headers: headers({ Accept: "text/event-stream" }), signal: abort.signal });
  } catch (e) {
    if (abort.signal.aborted) return;
    return retry("error", "offline: " + e.message);
  }
  if (res.status === 401 || res.status === 403) {
    setConn("unauthorized", state.token ? "token refused" : "token needed");
    $("#token").focus();
    return; // waits for a token
  }
  if (!res.ok) return retry("error", "error " + res.status);
  setConn("live");
  state.retryMs = 1000;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        dispatch(block);
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return;
  }
  if (!abort.signal.aborted) retry("connecting", "reconnecting");
}

function retry(s, text) {
  setConn(s, text);
  setTimeout(connect, state.retryMs);
  state.retryMs = Math.min(state.retryMs * 2, 10000);
}

function dispatch(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // keep-alive
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  if (event === "snapshot") render(JSON.parse(data.join("\n")));
  else if (event === "problem") toast(data.join("\n"), true);
}

// ---- rendering -------------------------------------------------------------------------------

function render(snap) {
  const main = $("#groups");
  if (!snap.groups.length) main.innerHTML = '<p class="empty">No groups in this daemon\'s config.</p>';
  const seen = new Set();
  for (const g of snap.groups) {
    seen.add(g.name);
    let entry = state.groups.get(g.name);
    if (!entry) {
      entry = { el: groupShell(g.name), history: [], seeded: false, last: null };
      state.groups.set(g.name, entry);
      $(".empty", main)?.remove();
      main.appendChild(entry.el);
      seed(g.name, entry);
    }
    entry.last = g;
    record(entry, g, snap.at_ms);
    fill(entry, g, snap.at_ms);
  }
  for (const [name, entry] of state.groups) {
    if (!seen.has(name)) {
      entry.el.remove();
      state.groups.delete(name);
    }
  }
  $("#overview").innerHTML = snap.groups.map(overviewCard).join("");
}

function overviewCard(g) {
  const l = g.live || {};
  const flags = [g.paused && "paused", g.dry_run && "dry run", g.pending_operation && "busy"].filter(Boolean).join(", ");
  return `<a href="#g-${esc(g.name)}"><b>${esc(g.name)}</b><small>${count(l.size ?? g.members.length)}` +
    (l.max ? ` (${l.min}–${l.max})` : "") + (flags ? ` · ${esc(flags)}` : "") + `</small></a>`;
}

function groupShell(name) {
  const el = document.createElement("section");
  el.className = "group";
  el.id = "g-" + name;
  el.dataset.group = name;
  el.innerHTML = `
    <h2></h2>
    <p class="facts"></p>
    <details class="decision"><summary></summary>
      <table class="inputs"><thead><tr><th>Member</th><th>Fresh</th><th>Readings (age)</th></tr></thead><tbody></tbody></table>
    </details>
    <div class="cols">
      <div>
        <div class="chart"></div>
        <div class="legend"></div>
        <form class="controls" autocomplete="off">
          <button type="button" data-act="pause">Pause</button>
          <button type="button" data-act="dry">Dry run</button>
          <label>Desired <input type="number" name="desired" min="0" step="1"></label>
          <button type="submit">Set</button>
          <button type="button" data-act="handover">Hand over</button>
          <button type="button" data-act="rollout">Roll out</button>
        </form>
        <h3>Members</h3>
        <div class="table-wrap"><table class="members">
          <thead><tr><th>Member</th><th>State</th><th class="num">Req/s</th><th class="num hide-narrow">Share</th>
          <th class="num">CPU %</th><th class="num">MEM %</th><th></th></tr></thead>
          <tbody></tbody></table></div>
      </div>
      <div><h3>Events</h3><ul class="events"></ul></div>
    </div>`;
  $(".controls", el).addEventListener("submit", (e) => {
    e.preventDefault();
    const n = Number(e.target.desired.value);
    if (!Number.isInteger(n) || n < 0) return toast("desired: a whole number of members", true);
    act(name, "PUT", `/groups/${enc(name)}/desired`, { desired: n });
  });
  el.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]");
    if (!b) return;
    const g = state.groups.get(name)?.last;
    const m = b.dataset.member;
    const path = `/groups/${enc(name)}`;
    switch (b.dataset.act) {
      case "pause": return act(name, "POST", `${path}/${g?.paused ? "resume" : "pause"}`);
      case "dry": return act(name, "PUT", `${path}/dry-run`, { enabled: !g?.dry_run });
      case "handover": return act(name, "POST", `${path}/handover`);
      case "rollout":
        if (confirm(`Replace every member of ${name}, a batch at a time?`)) act(name, "POST", `${path}/rollout`);
        return;
      case "protect": return act(name, "POST", `${path}/members/${enc(m)}/protect`);
      case "unprotect": return act(name, "POST", `${path}/members/${enc(m)}/unprotect`);
      case "drain":
        if (confirm(`Drain ${m} and remove it from ${name}?`)) act(name, "POST", `${path}/members/${enc(m)}/drain`);
        return;
      case "replace":
        if (confirm(`Replace ${m} with a new member?`)) act(name, "POST", `${path}/members/${enc(m)}/replace`);
        return;
    }
  });
  return el;
}

const enc = encodeURIComponent;

async function act(group, method, path, body) {
  try {
    const res = await fetch(API + path, {
      method,
      headers: headers(body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const why = json?.detail || text || res.statusText;
      toast(`${group}: ${why}` + (res.status === 401 || res.status === 403 ? " (an admin token is needed)" : ""), true);
      return;
    }
    toast(`${group}: ` + (json?.request ? `queued: ${json.request}` : "done"));
  } catch (e) {
    toast(`${group}: ${e.message}`, true);
  }
}

// The chart's history: the store's series first, then each decision the snapshots carry.
async function seed(name, entry) {
  const since = Date.now() - windowMs();
  const step = Math.max(1000, Math.round(windowMs() / 240));
  try {
    const res = await fetch(`${API}/groups/${enc(name)}/series?since_ms=${since}&step_ms=${step}`, { headers: headers() });
    if (!res.ok) return;
    const s = await res.json();
    const old = s.points.map((p) => ({ at: p.at_ms, value: p.value, size: p.members }));
    const first = old.length ? old[0].at : Infinity;
    const last = old.length ? old[old.length - 1].at : -Infinity;
    // The store's points replace what the page held for their span; live points before and after stay.
    entry.history = entry.history.filter((h) => h.at < first).concat(old, entry.history.filter((h) => h.at > last));
    entry.seeded = true;
    if (entry.last) fill(entry, entry.last, Date.now());
  } catch (_) { /* the live points still come */ }
}

function record(entry, g, now) {
  const d = g.live?.last_decision;
  const size = g.live?.size ?? g.members.length;
  const h = entry.history;
  const at = d ? d.at_ms : now;
  if (h.length && h[h.length - 1].at >= at) {
    h[h.length - 1].size = size;
  } else {
    h.push({ at, value: d?.value ?? null, size });
  }
  while (h.length && h[0].at < now - LONGEST) h.shift();
}

function fill(entry, g, now) {
  const el = entry.el;
  const l = g.live || {};
  const badges = [
    l.mode && `<span class="badge">${esc(l.mode)}</span>`,
    l.policy && `<span class="badge">${esc(l.policy)}</span>`,
    g.paused && '<span class="badge paused">paused</span>',
    g.dry_run && '<span class="badge dry">dry run</span>',
    g.pending_operation && `<span class="badge busy">${esc(g.pending_operation)}</span>`,
    g.request && `<span class="badge busy">queued: ${esc(g.request)}</span>`,
    l.last_error && `<span class="badge error" title="${esc(l.last_error)}">error</span>`,
  ].filter(Boolean).join(" ");
  $("h2", el).innerHTML = `${esc(g.name)} ${badges}`;
  const sc = l.scaling;
  const lines = sc ? [sc.high != null && `out at ≥ ${sc.high}`, sc.low != null && `in at ≤ ${sc.low}`, sc.target != null && `target ${sc.target}`].filter(Boolean).join(", ") : "";
  $(".facts", el).textContent = `${count(l.size ?? g.members.length)} (min ${l.min ?? "?"}, max ${l.max ?? "?"})` +
    (sc ? ` · ${scaledOn(sc)}${lines ? ": " + lines : ""}` : "") +
    (g.primary ? ` · primary ${g.primary}` : "");
  const d = l.last_decision;
  $(".decision summary", el).textContent = d
    ? `${clock(d.at_ms)} ${d.outcome}${d.reason ? " (" + d.reason + ")" : ""}: ${d.summary}${d.held_back ? " · held back: " + d.held_back : ""}`
    : "no decision yet";
  // What the decision saw, member by member (opened by a click on the line above).
  $(".decision .inputs tbody", el).innerHTML = (d?.inputs || []).map((i) =>
    `<tr data-input="${esc(i.member)}"><td>${esc(i.member)}</td><td>${i.fresh ? "yes" : "stale"}</td><td>` +
    i.values.map((v) => `${esc(v.metric)} ${fmt(v.value)} (${(v.age_ms / 1000).toFixed(1)} s)`).join(", ") +
    "</td></tr>").join("") || '<tr><td colspan="3" class="empty">no member reported</td></tr>';
  const pause = $('[data-act="pause"]', el);
  pause.textContent = g.paused ? "Resume" : "Pause";
  $('[data-act="dry"]', el).textContent = g.dry_run ? "Dry run off" : "Dry run on";
  $('[data-act="handover"]', el).hidden = l.mode !== "handover";
  const desired = $('input[name="desired"]', el);
  if (l.min != null) { desired.min = l.min; desired.max = l.max; }
  if (document.activeElement !== desired) desired.value = l.size ?? g.members.length;
  $(".chart", el).innerHTML = chart(entry.history, sc, l, g.events, now);
  $(".legend", el).innerHTML = legend(sc);
  $(".members tbody", el).innerHTML = g.members.map((m) => memberRow(m, g)).join("") ||
    '<tr><td colspan="7" class="empty">no members</td></tr>';
  $(".events", el).innerHTML = g.events.map((e) =>
    `<li><time datetime="${new Date(e.at_ms).toISOString()}">${clock(e.at_ms)}</time><span class="k k-${esc(e.kind)}">${esc(e.kind)}</span>${esc(e.message)}</li>`).join("");
}

function memberRow(m, g) {
  const total = g.members.reduce((s, x) => s + (x.rps || 0), 0);
  const share = total > 0 && m.rps != null ? m.rps / total : null;
  const failing = m.failing_since_ms != null;
  const st = failing ? "failing" : m.state.split(" ")[0];
  const title = failing ? `failing its health check since ${clock(m.failing_since_ms)}` : m.state;
  const bar = share == null ? "–" : `<svg width="50" height="8" aria-hidden="true"><rect width="${Math.round(50 * share)}" height="8" fill="#2462c9"/></svg> ${Math.round(share * 100)}%`;
  const protect = m.protected
    ? `<button type="button" data-act="unprotect" data-member="${esc(m.name)}">Unprotect</button>`
    : `<button type="button" data-act="protect" data-member="${esc(m.name)}">Protect</button>`;
  return `<tr data-member="${esc(m.name)}"><td>${esc(m.name)}${g.primary === m.name ? " ★" : ""}${m.protected ? " 🔒" : ""}</td>` +
    `<td><span class="state-${esc(st)}" title="${esc(title)}">${esc(failing ? "failing" : m.state)}</span></td>` +
    `<td class="num">${fmt(m.rps)}</td><td class="num hide-narrow">${bar}</td>` +
    `<td class="num">${fmt(m.cpu)}</td><td class="num">${fmt(m.mem)}</td>` +
    `<td class="acts">${protect} <button type="button" data-act="drain" data-member="${esc(m.name)}" class="danger">Drain</button> ` +
    `<button type="button" data-act="replace" data-member="${esc(m.name)}">Replace</button></td></tr>`;
}

// What the policy reads, in words: "max of cpu, mem (mean over members)", "cpu (max over members)".
function scaledOn(sc) {
  const metric = sc.metric === "max" ? "max of cpu, mem" : sc.metric;
  return sc.combine === "member" ? metric : `${metric} (${sc.combine} over members)`;
}

function legend(sc) {
  if (!sc) return "";
  return [`<span><i class="lg-value"></i>${esc(scaledOn(sc))}</span>`, '<span><i class="lg-count"></i>members</span>',
    sc.high != null ? '<span><i class="lg-high"></i>high</span>' : "", sc.low != null ? '<span><i class="lg-low"></i>low</span>' : "",
    sc.target != null ? '<span><i class="lg-target"></i>target</span>' : ""].join("");
}

// An SVG chart: the scaling value (left axis), the member count (right axis, stepped), the policy's
// lines, and a mark on the time axis for each scale event.
function chart(history, sc, live, events, now) {
  const W = 640, H = 200, L = 40, R = 30, T = 10, B = 22;
  const span = windowMs();
  const x0 = now - span;
  const x = (t) => L + ((t - x0) / span) * (W - L - R);
  const values = history.filter((h) => h.value != null).map((h) => h.value);
  const lines = sc ? [sc.high, sc.low, sc.target].filter((v) => v != null) : [];
  let top = Math.max(1, ...values, ...lines) * 1.1;
  if (sc && ["cpu", "mem", "max"].includes(sc.metric) && top <= 110) top = 100;
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const maxCount = Math.max(1, live.max || 1, ...history.map((h) => h.size || 0));
  const yc = (n) => T + (1 - n / maxCount) * (H - T - B);
  const pts = history.filter((h) => h.value != null && h.at >= x0);
  const path = pts.map((h, i) => `${i ? "L" : "M"}${x(h.at).toFixed(1)},${y(h.value).toFixed(1)}`).join("");
  const steps = [];
  history.filter((h) => h.at >= x0).forEach((h, i) => {
    steps.push(`${i ? "L" : "M"}${x(h.at).toFixed(1)},${yc(h.size).toFixed(1)}`);
    const next = history[history.indexOf(h) + 1];
    steps.push(`L${x(next ? next.at : now).toFixed(1)},${yc(h.size).toFixed(1)}`);
  });
  const hline = (v, cls) => `<line class="${cls}" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`;
  const marks = (events || []).filter((e) => ["scale-out", "scale-in", "handover"].includes(e.kind) && e.at_ms >= x0)
    .map((e) => `<line class="mark mark-${e.kind}" x1="${x(e.at_ms).toFixed(1)}" x2="${x(e.at_ms).toFixed(1)}" y1="${T}" y2="${H - B + 4}"><title>${esc(clock(e.at_ms) + " " + e.message)}</title></line>`);
  const ago = (ms) => (ms >= 3_600_000 ? `-${+(ms / 3_600_000).toFixed(1)}h` : `-${+(ms / 60_000).toFixed(1)}m`);
  const ticks = [0, 1, 2, 3].map((i) => {
    const back = span - (i * span) / 3;
    return `<text x="${x(now - back).toFixed(1)}" y="${H - 6}" text-anchor="middle">${back ? ago(back) : "now"}</text>`;
  });
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="scaling value and member count over the last ${state.window}">
    <line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>
    <text x="${L - 4}" y="${T + 8}" text-anchor="end">${fmt(top, 0)}</text><text x="${L - 4}" y="${H - B}" text-anchor="end">0</text>
    <text x="${W - R + 4}" y="${T + 8}">${maxCount}</text>
    ${sc?.high != null ? hline(sc.high, "high") : ""}${sc?.low != null ? hline(sc.low, "low") : ""}${sc?.target != null ? hline(sc.target, "target") : ""}
    ${marks.join("")}
    <path class="count" d="${steps.join("")}"/>
    <path class="value" d="${path}"/>
    ${ticks.join("")}
  </svg>`;
}

// ---- the token -------------------------------------------------------------------------------

$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("#token").value.trim();
  $("#token").value = "";
  if (state.token) sessionStorage.setItem(KEY, state.token);
  else sessionStorage.removeItem(KEY);
  connect();
});
$("#forget").addEventListener("click", () => {
  state.token = "";
  sessionStorage.removeItem(KEY);
  connect();
});

// The chart's window: each group's history is fetched again for the new span.
const picker = $("#window");
picker.value = state.window;
picker.addEventListener("change", () => {
  state.window = picker.value;
  localStorage.setItem("flotilla.window", state.window);
  for (const [name, entry] of state.groups) seed(name, entry);
});

connect();
