// The inspector's page. Every value that comes from an event, a header or a
// record is put in the page as text (textContent / text nodes), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let catalog = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
  }
  return e;
}

function status(text, bad) {
  const s = $("status");
  s.textContent = text || "";
  s.className = bad ? "bad" : "";
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (r.status === 401) { location.reload(); throw new Error("signed out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

const pad = (n) => String(n).padStart(2, "0");
function timeCell(iso) {
  if (!iso) return el("td", {}, "");
  const d = new Date(iso);
  if (isNaN(d)) return el("td", {}, iso);
  const utc = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "") + " UTC";
  const local = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " local";
  return el("td", {}, el("time", { datetime: iso }, utc), el("br"), el("span", { class: "local" }, local));
}

function eventRow(e) {
  const seq = el("a", { href: "#/event/" + e.seq }, String(e.seq));
  const obj = e.object_id
    ? el("a", { href: "#/object/" + encodeURIComponent(e.object_id) }, (e.object_type ? e.object_type + " " : "") + e.object_id)
    : "";
  const tr = el("tr", {}, el("td", {}, seq), timeCell(e.stored_at), el("td", {}, e.type || "(" + e.subject + ")"), el("td", {}, obj), el("td", {}, e.id || ""), el("td", {}, String(e.size)));
  tr.dataset.href = "#/event/" + e.seq;
  return tr;
}

function fill(tbody, rows) {
  const frag = document.createDocumentFragment();
  rows.forEach((r) => frag.append(r));
  tbody.replaceChildren(frag);
}

// ---- live: the last stored events, then new ones as they arrive, buffered
// and drawn at most 4 times a second; a marked row says where live starts ----
let liveSource = null, livePaused = false, liveBuffer = [], liveRows = [], liveCount = 0, liveTimer = null;
let liveStored = [], liveSince = null, liveLastSeq = 0;
const LIVE_KEEP = 200, LIVE_STORED = 50;
function drawLive() {
  const rows = liveRows.map(eventRow);
  if (liveStored.length) {
    const since = liveSince ? liveSince.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
    rows.push(el("tr", { class: "live-start" }, el("td", { colspan: 6 }, "▲ live since " + since + " · ▼ the last " + liveStored.length + " stored before")));
    liveStored.forEach((e) => rows.push(eventRow(e)));
  }
  fill($("live-rows"), rows);
}
function startLive() {
  if (liveSource) return;
  liveSince = new Date();
  // The stream opens first, so nothing stored meanwhile is missed; what both
  // bring is shown once (by sequence).
  liveSource = new EventSource("/api/live");
  liveSource.onmessage = (m) => {
    liveCount++;
    try { liveBuffer.push(JSON.parse(m.data)); } catch (_) { return; }
    if (liveBuffer.length > LIVE_KEEP) liveBuffer.splice(0, liveBuffer.length - LIVE_KEEP);
  };
  liveSource.onerror = () => status("live connection interrupted; reconnecting…", true);
  liveSource.onopen = () => status("");
  api("/api/events?limit=" + LIVE_STORED).then((r) => {
    liveStored = r.events;
    liveLastSeq = liveStored.length ? liveStored[0].seq : 0;
    liveRows = liveRows.filter((e) => e.seq > liveLastSeq);
    drawLive();
  }).catch((e) => status(e.message, true));
  let lastCount = 0, lastAt = performance.now();
  liveTimer = setInterval(() => {
    const now = performance.now();
    if (now - lastAt >= 1000) {
      $("live-rate").textContent = Math.round((liveCount - lastCount) * 1000 / (now - lastAt)) + " events/s";
      lastCount = liveCount; lastAt = now;
    }
    if (livePaused || liveBuffer.length === 0) return;
    const fresh = liveBuffer.splice(0).filter((e) => e.seq > liveLastSeq).reverse();
    liveRows = fresh.concat(liveRows).slice(0, LIVE_KEEP);
    drawLive();
  }, 250);
}

// ---- history ----
let historyStack = [], historyAsked = 0;
async function loadHistory(beforeSeq) {
  // Only the latest search is drawn: an earlier one answering late (the view
  // opening, then a filter submitted) must not replace it.
  const asked = ++historyAsked;
  const form = new FormData($("filters"));
  const q = new URLSearchParams();
  for (const [k, v] of form.entries()) if (String(v).trim()) q.set(k, String(v).trim());
  if (beforeSeq) q.set("before_seq", beforeSeq);
  status("loading…");
  try {
    const r = await api("/api/events?" + q.toString());
    if (asked !== historyAsked) return;
    fill($("history-rows"), r.events.map(eventRow));
    $("history-older").disabled = r.next_before_seq === null;
    $("history-older").dataset.next = r.next_before_seq || "";
    status(r.events.length ? "" : "no event matches");
  } catch (e) { status(e.message, true); }
}

async function loadObject(id) {
  $("object-id").textContent = id;
  status("loading…");
  try {
    const r = await api("/api/objects/" + encodeURIComponent(id) + "/events");
    fill($("object-rows"), r.events.map(eventRow));
    status(r.events.length ? "" : "no event of this object is stored");
  } catch (e) { status(e.message, true); }
}

const shellQuote = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
let currentEvent = null;
async function loadEvent(seq) {
  $("event-seq").textContent = seq;
  status("loading…");
  try {
    const e = await api("/api/events/" + encodeURIComponent(seq));
    currentEvent = e;
    const meta = $("event-meta");
    meta.replaceChildren();
    const add = (k, v) => meta.append(el("dt", {}, k), v instanceof Node ? el("dd", {}, v) : el("dd", {}, v));
    add("Subject", e.subject);
    add("Stream sequence", String(e.seq));
    const t = timeCell(e.stored_at);
    add("Stored", el("span", {}, ...Array.from(t.childNodes)));
    fill($("event-headers"), Object.entries(e.headers).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
    // The payload as stored only when the inspector reveals credentials;
    // otherwise the pretty view below has them replaced.
    $("event-raw").textContent = e.reveal_secrets ? e.payload
      : "Not shown: a payload may carry stream keys and secrets, and this inspector hides them (inspect.reveal_secrets = false)." + (e.hidden_values ? " " + e.hidden_values + " value(s) hidden below." : "");
    $("event-hidden").textContent = e.hidden_values ? e.hidden_values + " value(s) hidden as “•••• (hidden)”: credentials, never shown unless inspect.reveal_secrets = true." : "";
    let pretty;
    try { pretty = JSON.stringify(JSON.parse(e.payload), null, 2); } catch (_) { pretty = "(not JSON)"; }
    $("event-pretty").textContent = pretty;
    const obj = e.headers["FastPix-Object-Id"];
    const link = $("event-object");
    link.hidden = !obj;
    if (obj) link.setAttribute("href", "#/object/" + encodeURIComponent(obj));
    $("copied").textContent = "";
    status("");
  } catch (err) { status(err.message, true); }
}

async function copy(text) {
  try { await navigator.clipboard.writeText(text); $("copied").textContent = "Copied: " + text; }
  catch (_) { $("copied").textContent = text; }
}

async function loadDead() {
  try {
    const r = await api("/api/dead_letters?limit=100");
    $("invalid-subject").textContent = (catalog ? catalog.prefix : "fastpix") + "_invalid";
    fill($("invalid-rows"), r.invalid.map((d) => el("tr", {}, el("td", {}, String(d.seq)), timeCell(d.stored_at), el("td", {}, d.reason || ""), el("td", {}, String(d.size)), el("td", {}, el("pre", {}, d.payload)))));
    $("dead-note").textContent = r.dead_letter_stream ? "From stream " + r.dead_letter_stream + "." : "No consumer dead-letter stream (<stream>_DEAD_LETTERS) exists yet.";
    fill($("dead-rows"), r.consumer.map((d) => el("tr", {}, el("td", {}, String(d.seq)), timeCell(d.stored_at), el("td", {}, d.consumer || ""), el("td", {}, d.reason || ""), el("td", {}, d.deliveries || ""), el("td", {}, d.last_error || ""),
      el("td", {}, d.stream_seq ? el("a", { href: "#/event/" + encodeURIComponent(d.stream_seq) }, d.stream_seq) : ""), el("td", {}, d.original_subject || ""))));
    status("");
  } catch (e) { status(e.message, true); }
}

async function loadRefused() {
  try {
    const r = await api("/api/refused?limit=200");
    fill($("refused-rows"), r.refused.map((x) => el("tr", {}, timeCell(x.time || x.stored_at), el("td", {}, String(x.status || "")), el("td", {}, x.outcome || ""), el("td", {}, x.reason || ""), el("td", {}, x.remote_addr || ""), el("td", {}, x.user_agent || ""), el("td", {}, x.body_size === null || x.body_size === undefined ? "" : String(x.body_size)), el("td", {}, x.body_sha256 || ""))));
    status(r.refused.length ? "" : "nothing refused is recorded");
  } catch (e) { status(e.message, true); }
}

const charts = [];
function sparkline(target, history) {
  if (typeof uPlot === "undefined" || history.length < 1) { target.textContent = history.length ? "" : "(sampled every 30 s)"; return; }
  const xs = history.map((p) => p[0]), ys = history.map((p) => p[1]);
  charts.push(new uPlot({ width: 180, height: 50, legend: { show: false }, cursor: { show: false }, axes: [{ show: false }, { show: false }], series: [{}, { stroke: "#1849a9", fill: "rgba(24,73,169,.15)" }] }, [xs, ys], target));
}

async function loadConsumers() {
  try {
    const r = await api("/api/consumers");
    charts.splice(0).forEach((c) => c.destroy());
    const rows = r.consumers.filter((c) => c.durable).map((c) => {
      const chart = el("div", { role: "img", "aria-label": "pending count of " + c.name + " over the last hour" });
      const tr = el("tr", {}, el("td", {}, c.name), el("td", {}, c.filter_subjects.join(", ") || "(all)"), el("td", { class: "pending" }, String(c.num_pending)), el("td", {}, String(c.num_ack_pending)), el("td", {}, String(c.num_redelivered)), el("td", {}, String(r.dead_letters[c.name] || 0)), timeCell(c.last_active), el("td", {}, chart));
      setTimeout(() => sparkline(chart, c.pending_history), 0);
      return tr;
    });
    fill($("consumer-rows"), rows);
    const sel = $("replay-consumer");
    fill(sel, r.consumers.filter((c) => c.durable && c.name !== "fastpix-inspector-index").map((c) => el("option", { value: c.name }, c.name)));
    status("");
  } catch (e) { status(e.message, true); }
}

let overviewChart = null;
async function loadOverview() {
  try {
    const r = await api("/api/overview");
    const s = r.stream;
    $("overview-stream").textContent = "Stream " + s.name + ": " + s.messages + " messages, " + s.bytes + " bytes, sequences " + s.first_seq + "–" + s.last_seq + (r.index_pending ? "; " + r.index_pending + " not yet indexed" : "") + ".";
    const fillText = s.max_bytes > 0
      ? (s.fill_ratio * 100).toFixed(1) + "% full (" + s.bytes + " of " + s.max_bytes + " bytes, jetstream.max_bytes)" + (s.full ? ": FULL, new events are answered 503 storage_full until there is room" : "")
      : "no size bound (jetstream.max_bytes unset on this stream)";
    $("overview-fill").textContent = "Storage: " + fillText + ".";
    $("overview-fill").className = s.full ? "bad" : "";
    const meter = $("overview-fill-meter");
    meter.hidden = !(s.max_bytes > 0);
    meter.value = s.fill_ratio || 0;
    const w = r.windows;
    const get = (win, kind, k) => (w[win] && w[win][kind][k]) || 0;
    const fams = (catalog ? catalog.families.map((f) => f.name) : []).concat(["other"]);
    fill($("overview-families").tBodies[0], fams.map((f) => el("tr", {}, el("td", {}, f), el("td", {}, String(get("hour", "families", f))), el("td", {}, String(get("day", "families", f))), el("td", {}, String(get("month", "families", f))))));
    const types = Object.keys((w.month && w.month.types) || {}).sort();
    fill($("overview-types").tBodies[0], types.map((t) => el("tr", {}, el("td", {}, t), el("td", {}, String(get("hour", "types", t))), el("td", {}, String(get("day", "types", t))), el("td", {}, String(get("month", "types", t))))));
    if (typeof uPlot !== "undefined") {
      const xs = r.hourly.map((p) => Date.parse(p.start) / 1000);
      const colors = ["#1849a9", "#c2410c", "#15803d", "#7e22ce", "#52525b"];
      const data = [xs].concat(fams.map((f) => r.hourly.map((p) => p.families[f] || 0)));
      if (overviewChart) overviewChart.destroy();
      const target = $("overview-chart");
      target.replaceChildren();
      overviewChart = new uPlot({ width: Math.min(900, target.clientWidth || 900), height: 240, title: "Events per hour, last 24 hours, by family", series: [{}].concat(fams.map((f, i) => ({ label: f, stroke: colors[i % colors.length], width: 2 }))) }, data, target);
    }
    status("");
  } catch (e) { status(e.message, true); }
}

// ---- routing ----
const views = ["live", "history", "object", "event", "dead", "refused", "consumers", "overview", "actions"];
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  let view = parts[0] || "live";
  if (!views.includes(view)) view = "live";
  for (const v of views) $("view-" + v).hidden = v !== view;
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  const arg = parts.slice(1).join("/");
  if (view === "live") startLive();
  else if (view === "history") loadHistory();
  else if (view === "object") loadObject(decodeURIComponent(arg));
  else if (view === "event") loadEvent(arg);
  else if (view === "dead") loadDead();
  else if (view === "refused") loadRefused();
  else if (view === "consumers" || view === "actions") loadConsumers();
  else if (view === "overview") loadOverview();
}

// A click anywhere on a row opens its event (a link inside it keeps its own target).
document.addEventListener("click", (ev) => {
  if (ev.target.closest("a, button, input, select")) return;
  const tr = ev.target.closest("tbody tr[data-href]");
  if (tr && !window.getSelection().toString()) location.hash = tr.dataset.href;
});

// j/k move between the rows of the visible table; Enter opens the row.
document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key !== "j" && ev.key !== "k" && ev.key !== "Enter") return;
  const section = document.querySelector("main section:not([hidden])");
  if (!section) return;
  const rows = Array.from(section.querySelectorAll("tbody tr"));
  if (!rows.length) return;
  let i = rows.findIndex((r) => r.classList.contains("sel"));
  if (ev.key === "Enter") {
    if (i >= 0 && rows[i].dataset.href && ev.target === document.body) location.hash = rows[i].dataset.href;
    return;
  }
  if (i >= 0) rows[i].classList.remove("sel");
  i = ev.key === "j" ? Math.min(rows.length - 1, i + 1) : Math.max(0, i - 1);
  rows[i].classList.add("sel");
  rows[i].scrollIntoView({ block: "nearest" });
});

document.addEventListener("DOMContentLoaded", async () => {
  $("live-pause").addEventListener("click", () => {
    livePaused = !livePaused;
    $("live-pause").setAttribute("aria-pressed", String(livePaused));
    $("live-pause").textContent = livePaused ? "Resume" : "Pause";
  });
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); historyStack = []; loadHistory(); });
  $("history-newest").addEventListener("click", () => { historyStack = []; loadHistory(); });
  $("history-older").addEventListener("click", () => { const n = $("history-older").dataset.next; if (n) { historyStack.push(n); loadHistory(n); } });
  $("copy-send").addEventListener("click", () => {
    if (!currentEvent) return;
    const t = currentEvent.headers["FastPix-Event-Type"] || "video.media.ready";
    const id = currentEvent.headers["FastPix-Event-Id"];
    copy("fastpix-nats-bridge send " + shellQuote(t) + (id ? " --id " + shellQuote(id) : ""));
  });
  $("copy-subscribe").addEventListener("click", () => {
    if (!currentEvent) return;
    copy("fastpix-nats-bridge subscribe --all --json " + shellQuote(currentEvent.subject));
  });
  $("send-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const type = $("send-type").value;
    $("send-result").textContent = "sending…";
    try {
      const r = await api("/api/actions/send", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ type }) });
      $("send-result").textContent = "The bridge at " + r.url + " answered " + r.status + " for " + r.event_type + " (id " + r.id + "): " + r.answer;
    } catch (e) { $("send-result").textContent = e.message; }
  });
  $("replay-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData($("replay-form"));
    const consumer = String(f.get("consumer") || "");
    const seq = String(f.get("start_seq") || "").trim(), t = String(f.get("start_time") || "").trim();
    if (!consumer || (!seq && !t)) { $("replay-result").textContent = "Choose a consumer and a sequence or a time."; return; }
    const from = seq ? "sequence " + seq : "time " + t;
    if (!window.confirm("Move consumer " + consumer + " back to " + from + "? It will receive those events again.")) return;
    const body = { consumer, confirm: consumer };
    if (seq) body.start_seq = Number(seq); else body.start_time = t;
    try {
      await api("/api/actions/replay", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      $("replay-result").textContent = "Consumer " + consumer + " now starts from " + from + ".";
    } catch (e) { $("replay-result").textContent = e.message; }
  });
  try {
    catalog = await api("/api/catalog");
    fill($("family-select"), [el("option", { value: "" }, "any")].concat(catalog.families.map((f) => el("option", { value: f.name }, f.name))));
    fill($("send-type"), catalog.families.flatMap((f) => f.types.map((t) => el("option", { value: t }, t))));
  } catch (e) { status(e.message, true); }
  window.addEventListener("hashchange", route);
  route();
});
