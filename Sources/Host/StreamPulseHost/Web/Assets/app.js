// StreamPulse dashboard: plain JS, no framework, no inline script (the CSP forbids it).
// Every value from the server is inserted with textContent or as an attribute, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  session: null, streams: new Map(), page: 0, tz: "UTC", legend: null, events: null,
  renderQueued: false, history: null,
};
// For the browser tests' in-page fetch() calls (same-origin script can read the token anyway).
window.__spCsrf = () => (state.session && state.session.csrf) || "";
const RANK = { down: 0, pending: 1, degraded: 2, unknown: 3, ok: 4 };

// ---------- small helpers ----------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "title") node.title = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (init.body !== undefined && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  const method = (init.method || "GET").toUpperCase();
  if (method !== "GET" && state.session && state.session.csrf) init.headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(path, init);
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await response.json().catch(() => null);
  if (response.status === 401 && path !== "/api/login") { showLogin("Your session ended; sign in again."); throw new Error("unauthenticated"); }
  if (response.status === 403 && data && data.code === "password_change_required") { showChange(); throw new Error("password change required"); }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

function displayStatus(s) { return s.pending ? "pending" : s.status; }

function fmtTime(iso, withDate = true) {
  if (!iso) return "";
  const d = new Date(iso);
  const opts = { timeZone: state.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (withDate) { opts.year = "numeric"; opts.month = "2-digit"; opts.day = "2-digit"; }
  try { return new Intl.DateTimeFormat(undefined, opts).format(d) + (withDate ? ` ${state.tz}` : ""); }
  catch { return d.toISOString(); }
}

function relative(iso) {
  if (!iso) return "never";
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function pct(v) {
  if (v === undefined || v === null) return null;
  return v <= 1 ? v * 100 : v;
}

function uptimeBadge(v, label) {
  const p = pct(v);
  if (p === null) return el("span", { class: "up none", title: `${label}: no checks yet`, text: "–" });
  const cls = p >= 99 ? "good" : p >= 95 ? "warn" : "bad";
  const text = p >= 99.95 ? "100%" : `${p.toFixed(p >= 99 ? 2 : 1)}%`;
  return el("span", { class: `up ${cls}`, title: `${label} uptime ${p.toFixed(3)}%`, text });
}

// ---------- theme ----------
function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try { localStorage.setItem("sp-theme", theme); } catch {}
}
function initTheme() {
  let theme = null;
  try { theme = localStorage.getItem("sp-theme"); } catch {}
  if (!theme) theme = window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = theme;
  $("theme").addEventListener("click", () => applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));
}

// ---------- time zone ----------
function zones(...needed) {
  // Chromium's list has no "UTC" (it is an alias there), yet UTC is the server's default zone.
  let list = [];
  try { list = Intl.supportedValuesOf("timeZone"); } catch {}
  for (const zone of ["UTC", ...needed]) if (zone && !list.includes(zone)) list = [zone, ...list];
  return list;
}
function initTimeZone(defaultZone) {
  let chosen = null;
  try { chosen = localStorage.getItem("sp-tz"); } catch {}
  const browser = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const select = $("tz");
  select.replaceChildren(
    el("option", { value: "@server", text: `Server default (${defaultZone})` }),
    el("option", { value: "@browser", text: `My browser (${browser})` }),
    ...zones(defaultZone).map((z) => el("option", { value: z, text: z })));
  select.value = chosen || "@server";
  if (!select.value) select.value = "@server";
  const resolve = () => select.value === "@server" ? defaultZone : select.value === "@browser" ? browser : select.value;
  state.tz = resolve();
  select.onchange = () => {
    try { localStorage.setItem("sp-tz", select.value); } catch {}
    state.tz = resolve();
    scheduleRender();
  };
  $("tz-wrap").hidden = false;
}

// ---------- views ----------
function showOnly(view) {
  for (const id of ["login-view", "change-view", "dash-view"]) $(id).hidden = id !== view;
  const signedIn = view === "dash-view";
  for (const id of ["counters", "status-line", "info", "export", "logout", "incidents"]) $(id).hidden = !signedIn;
  $("settings").hidden = !(signedIn && state.session && state.session.role === "admin");
  if (!signedIn && state.events) { state.events.close(); state.events = null; }
}

function showLogin(message = "") {
  state.session = null;
  showOnly("login-view");
  $("login-message").textContent = message;
  $("login-password").value = "";
  $("login-password").focus();
}

function showChange() {
  showOnly("change-view");
  $("logout").hidden = false;
  $("change-current").focus();
}

async function start() {
  initTheme();
  wireStatic();
  let info;
  try { info = await api("/api/session"); } catch { info = { authenticated: false, timezone_default: "UTC" }; }
  initTimeZone(info.timezone_default || "UTC");
  if (!info.authenticated) return showLogin();
  state.session = info;
  if (info.must_change_password) return showChange();
  await enterDashboard();
}

async function enterDashboard() {
  showOnly("dash-view");
  await loadStreams();
  connectLive();
  refreshHeader();
  if (!state.headerTimer) state.headerTimer = setInterval(refreshHeader, 15000);
  if (!state.clockTimer) state.clockTimer = setInterval(scheduleRender, 10000);
}

// ---------- data ----------
async function loadStreams() {
  const list = await api("/api/streams");
  state.streams = new Map(list.map((s) => [s.id, s]));
  fillFilters();
  render();
  performance.mark("sp-table-rendered");
}

function connectLive() {
  if (state.events) state.events.close();
  const source = new EventSource("/api/events");
  state.events = source;
  const pill = $("live");
  source.addEventListener("hello", () => { pill.textContent = "live"; pill.className = "pill good"; pill.title = "Updates are pushed by the server (Server-Sent Events)."; });
  source.addEventListener("streams", (e) => {
    for (const s of JSON.parse(e.data)) {
      const old = state.streams.get(s.id);
      if (old && old.uptime && !s.uptime) s.uptime = old.uptime;
      state.streams.set(s.id, s);
    }
    scheduleRender();
    if (state.history && state.history.id && !$("history").hidden) updateHistoryHeader();
  });
  source.addEventListener("reload", () => loadStreams().catch(() => {}));
  source.onerror = () => { pill.textContent = "reconnecting"; pill.className = "pill warn"; };
}

async function refreshHeader() {
  refreshIncidentCount();
  try {
    const failing = (await api("/api/sinks")).filter((s) => s.failing);
    const pill = $("sinks");
    pill.hidden = failing.length === 0;
    pill.textContent = failing.length ? `${failing.map((s) => s.name).join(", ")}: writes failing` : "";
    pill.title = failing.map((s) => `${s.name}: ${s.last_error || "error"} (${s.queued} queued, retrying; monitoring continues)`).join("\n");
  } catch {}
  try {
    const t = await api("/api/time");
    const ntp = $("ntp");
    if (t.synced && t.source === "kernel") {
      // No NTP server in StreamPulse's settings: the machine's own NTP daemon keeps the clock.
      const ms = (t.estimated_error_seconds || 0) * 1000;
      ntp.textContent = `Clock synced ±${ms < 1 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
      ntp.className = "pill good";
      ntp.title = `No NTP server configured here; the kernel reports the clock synchronised by the machine's NTP daemon (estimated error ${ms.toFixed(1)} ms, maximum ${((t.maximum_error_seconds || 0) * 1000).toFixed(0)} ms).`;
    } else if (t.synced) {
      const ms = Math.abs((t.offset_seconds || 0) * 1000);
      ntp.textContent = `NTP synced ±${ms < 1 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
      ntp.className = ms > 1000 ? "pill warn" : "pill good";
      ntp.title = `Server ${t.server || "?"}, stratum ${t.stratum ?? "?"}, offset ${(t.offset_seconds ?? 0).toFixed(4)} s, delay ${(t.delay_seconds ?? 0).toFixed(4)} s, last sync ${fmtTime(t.last_sync)}`;
    } else {
      ntp.textContent = t.source === "kernel" ? "Clock unsynced" : "NTP unsynced";
      ntp.className = "pill bad";
      ntp.title = t.error || "No NTP answer yet.";
    }
  } catch {}
  try {
    const c = await api("/api/config/status");
    const cfg = $("cfg");
    const rev = c.git_commit ? c.git_commit.slice(0, 8) : (c.revision || "").slice(0, 8);
    const restart = c.needs_restart || [];
    cfg.textContent = c.errors && c.errors.length ? `config: ${c.errors.length} error(s)`
      : restart.length ? `config ${rev || "loaded"} · restart needed` : `config ${rev || "loaded"}`;
    cfg.className = c.errors && c.errors.length ? "pill bad" : restart.length ? "pill warn" : "pill good";
    cfg.title = [`${c.streams} streams`, c.last_reload ? `last reload ${fmtTime(c.last_reload)}` : "", c.last_change || "",
      ...(c.errors || []), ...restart, ...(c.warnings || [])].filter(Boolean).join("\n");
  } catch {}
}

// ---------- filters and rendering ----------
function fillFilters() {
  const protos = new Set(), groups = new Set(), tags = new Set(), sites = new Set();
  for (const s of state.streams.values()) {
    if (s.protocol) protos.add(s.protocol);
    if (s.site) sites.add(s.site);
    if (s.group) groups.add(s.group);
    for (const t of s.tags || []) tags.add(t);
  }
  const fill = (id, label, values) => {
    const select = $(id), keep = select.value;
    select.replaceChildren(el("option", { value: "", text: label }), ...[...values].sort().map((v) => el("option", { value: v, text: v })));
    select.value = values.has(keep) ? keep : "";
  };
  fill("f-protocol", "All protocols", protos);
  fill("f-group", "All groups", groups);
  fill("f-site", "All sites", sites);
  $("f-site").hidden = sites.size === 0;
  $("streams").classList.toggle("no-sites", sites.size === 0);
  fill("f-tag", "All tags", tags);
}

function filtered() {
  const q = $("search").value.trim().toLowerCase();
  const status = $("f-status").value, proto = $("f-protocol").value, group = $("f-group").value, tag = $("f-tag").value;
  const site = $("f-site").value;
  const out = [];
  for (const s of state.streams.values()) {
    if (status && displayStatus(s) !== status) continue;
    if (proto && s.protocol !== proto) continue;
    if (group && s.group !== group) continue;
    if (site && s.site !== site) continue;
    if (tag && !(s.tags || []).includes(tag)) continue;
    if (q && !`${s.name} ${s.id} ${(s.tags || []).join(" ")} ${s.group || ""} ${s.site || ""} ${s.reason} ${s.url}`.toLowerCase().includes(q)) continue;
    out.push(s);
  }
  const sort = $("sort").value;
  const byName = (a, b) => a.name.localeCompare(b.name);
  const sorters = {
    status: (a, b) => (RANK[displayStatus(a)] - RANK[displayStatus(b)]) || byName(a, b),
    name: byName,
    latency: (a, b) => (b.latency_ms ?? -1) - (a.latency_ms ?? -1),
    uptime: (a, b) => ((a.uptime && a.uptime.day) ?? 2) - ((b.uptime && b.uptime.day) ?? 2) || byName(a, b),
    since: (a, b) => (b.since ? Date.parse(b.since) : 0) - (a.since ? Date.parse(a.since) : 0),
  };
  out.sort(sorters[sort] || sorters.status);
  return out;
}

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => { state.renderQueued = false; render(); });
}

function render() {
  const counts = { ok: 0, degraded: 0, down: 0, unknown: 0 };
  for (const s of state.streams.values()) counts[s.status] = (counts[s.status] || 0) + 1;
  for (const k of Object.keys(counts)) $(`n-${k}`).textContent = counts[k];
  document.title = counts.down ? `(${counts.down} down) StreamPulse` : "StreamPulse";
  renderSiteCounters();

  const list = filtered();
  const size = Number($("page-size").value);
  const pages = Math.max(1, Math.ceil(list.length / size));
  state.page = Math.min(state.page, pages - 1);
  const slice = list.slice(state.page * size, state.page * size + size);
  $("rows").replaceChildren(...slice.map(row));
  $("empty").hidden = list.length > 0;
  $("page-info").textContent = `${list.length ? state.page * size + 1 : 0}–${state.page * size + slice.length} of ${list.length}`;
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
}

// One counter per site (streams, and how many are down or degraded); a click filters to the site.
function renderSiteCounters() {
  const bySite = new Map();
  for (const s of state.streams.values()) {
    if (!s.site) continue;
    const c = bySite.get(s.site) || { streams: 0, ok: 0, degraded: 0, down: 0, unknown: 0 };
    c.streams += 1;
    c[s.status] = (c[s.status] || 0) + 1;
    bySite.set(s.site, c);
  }
  const box = $("site-counters");
  box.hidden = bySite.size === 0;
  box.replaceChildren(...[...bySite.keys()].sort().map((name) => {
    const c = bySite.get(name);
    const parts = [`${c.ok} ok`, c.degraded ? `${c.degraded} degraded` : "", c.down ? `${c.down} down` : "", c.unknown ? `${c.unknown} unknown` : ""];
    const button = el("button", { class: `site-count${c.down ? " has-down" : ""}`, "data-site": name, title: `Show only site ${name}` },
      el("b", { text: name }), ` ${c.streams} · ${parts.filter(Boolean).join(" · ")}`);
    button.addEventListener("click", () => { $("f-site").value = $("f-site").value === name ? "" : name; state.page = 0; scheduleRender(); });
    return button;
  }));
}

function row(s) {
  const st = displayStatus(s);
  const tr = el("tr", { "data-id": s.id, "data-status": st });
  const badge = el("span", { class: `badge st-${st}`, text: st, title: s.message || "" });
  const reasonText = s.reason === "ok" ? "" : s.phase ? `${s.reason} · ${s.phase}` : s.reason;
  const maintenance = s.maintenance ? el("span", { class: "badge st-maintenance", text: "maintenance",
    title: "In a maintenance window or silence: probed, not notified, not counted against uptime" }) : null;
  if (s.maintenance) tr.dataset.maintenance = "true";
  tr.append(el("td", {}, maintenance, badge, reasonText ? el("span", { class: "reason", text: reasonText, title: s.message || "" }) : null));
  const tags = (s.tags || []).map((t) => el("span", { class: "tag", text: t }));
  tr.append(el("td", {}, el("div", { class: "name", text: s.name }),
    el("div", { class: "small" }, s.group ? `${s.group} · ` : "", ...tags)));
  tr.append(el("td", { class: "c-site small", text: s.site || "–" }));
  tr.append(el("td", { class: "c-proto" }, el("span", { class: "proto", text: s.protocol || "?" })));
  const up = s.uptime || {};
  tr.append(el("td", { class: "c-uptime" }, uptimeBadge(up.day, "24 h"), uptimeBadge(up.week, "7 d"), uptimeBadge(up.month, "30 d")));
  const beat = el("span", { class: "beat", title: "Last checks, oldest first" });
  const recent = (s.recent || "").padStart(30, " ");
  for (const ch of recent) beat.append(el("i", { class: ch === " " ? "" : ch }));
  tr.append(el("td", { class: "c-beat" }, beat));
  tr.append(el("td", { class: "c-lat", text: s.latency_ms !== undefined && s.latency_ms !== null ? `${Math.round(s.latency_ms)} ms` : "–" }));
  const media = s.width ? `${s.width}×${s.height}${s.fps ? ` · ${s.fps.toFixed(1)} fps` : ""}${s.codec ? ` · ${s.codec}` : ""}` : "–";
  tr.append(el("td", { class: "c-media small", text: media }));
  tr.append(el("td", { class: "small", text: relative(s.last_check), title: s.last_check ? fmtTime(s.last_check) : "not checked yet" }));
  tr.addEventListener("click", () => openHistory(s.id));
  return tr;
}

// ---------- history ----------
function updateHistoryHeader() {
  const s = state.streams.get(state.history.id);
  if (!s) return;
  const st = displayStatus(s);
  $("h-title").replaceChildren(el("span", { class: `badge st-${st}`, text: st }), " ", s.name);
  $("h-sub").textContent = `${s.protocol || "?"} · ${s.url} · ${s.reason}${s.phase ? ` (${s.phase})` : ""} — ${s.message || ""}` +
    (s.since ? ` · since ${fmtTime(s.since)}` : "");
}

async function openHistory(id) {
  state.history = { id, before: null };
  updateHistoryHeader();
  $("h-preview").hidden = !(state.session && state.session.role === "admin");
  $("h-preview-box").hidden = true;
  $("h-preview-img").removeAttribute("src");
  $("h-checks").replaceChildren();
  $("history").showModal();
  loadStreamIncidents(id);
  loadBaseline(id);
  await loadHistory();
}

// Picture health: the profile the stream is judged against and its reference view, beside the latest
// picture (the evidence for scene_changed, obstructed and blurred); admins accept a new profile or take the
// current picture as the reference.
const PICTURE_REASONS = ["scene_changed", "obstructed", "blurred", "profile_changed", "low_bitrate"];
async function loadBaseline(id) {
  const enc = encodeURIComponent(id);
  let b;
  try { b = await api(`/api/streams/${enc}/baseline`); } catch { $("h-baseline-box").hidden = true; return; }
  $("h-baseline-box").hidden = false;
  const p = b.profile;
  const size = p && p.width ? `${p.width}×${p.height}` : "";
  $("h-profile").textContent = !b.picture_checks ? "Picture checks are off for this stream (picture_checks: false)."
    : p ? `Profile (${b.profile_source || "learned"}${b.profile_at ? `, ${fmtTime(b.profile_at)}` : ""}): ${[p.codec, size,
        p.fps ? `${p.fps} fps` : "", p.bitrate_bps ? `${Math.round(p.bitrate_bps / 1000)} kb/s` : "",
        p.keyframe_interval_seconds ? `keyframe every ${p.keyframe_interval_seconds} s` : "",
        p.audio === undefined ? "" : (p.audio ? "audio" : "no audio")].filter(Boolean).join(" · ")}` +
        (b.drift_since ? ` — differs since ${fmtTime(b.drift_since)}` : "")
    : `Learning the profile (${b.learning_probes} of 3 good deep probes).`;
  const figures = [];
  if (b.reference_at) {
    figures.push(el("figure", {}, el("img", { src: `/api/streams/${enc}/reference.jpg?at=${encodeURIComponent(b.reference_at)}`, alt: "Reference picture", loading: "lazy" }),
      el("figcaption", { text: `reference · ${fmtTime(b.reference_at)}${b.reference_by ? ` · set by ${b.reference_by}` : ""}` })));
  }
  const s = state.streams.get(id);
  if (s && (PICTURE_REASONS.includes(s.reason) || s.reason === "frozen")) {
    // The evidence beside the reference: the picture of the latest change; for frozen, the first and the
    // last picture of the window.
    const changes = await api(`/api/streams/${enc}/changes?limit=5`).catch(() => []);
    const latest = changes.find((c) => c.has_thumbnail);
    if (latest) figures.push(...evidenceFigures(latest));
  }
  $("h-reference").replaceChildren(...figures);
  $("h-baseline-tools").hidden = !(state.session && state.session.role === "admin") || !b.picture_checks;
  $("h-baseline-msg").textContent = "";
}

// A change's pictures: its thumbnail, and for a frozen window the first and the last picture side by side.
function evidenceFigures(c) {
  const state = c.pending ? "pending" : c.to_status;
  const label = c.has_last_picture ? `${c.reason} · first picture` : `${c.reason === "ok" ? state : `${state} · ${c.reason}`}`;
  const out = [el("figure", {}, el("img", { src: `/api/changes/${c.id}/thumbnail.jpg`, alt: `Picture at ${state}`, loading: "lazy" }),
    el("figcaption", { text: `${label} · ${fmtTime(c.at)}` }))];
  if (c.has_last_picture) out.push(el("figure", { class: "last-picture" }, el("img", { src: `/api/changes/${c.id}/last.jpg`, alt: "Last picture of the frozen window", loading: "lazy" }),
    el("figcaption", { text: `${c.reason} · last picture · ${fmtTime(c.at)}` })));
  return out;
}

async function baselineAction(path, done) {
  const id = state.history.id;
  try {
    await api(`/api/streams/${encodeURIComponent(id)}/${path}`, { method: "POST" });
    $("h-baseline-msg").textContent = done;
    setTimeout(() => loadBaseline(id), 3000);
  } catch (e) { $("h-baseline-msg").textContent = e.message; }
}

async function loadHistory() {
  const h = state.history;
  const range = Number($("h-range").value);
  const now = Date.now() / 1000;
  const from = Math.floor(now - range);
  const enc = encodeURIComponent(h.id);
  const [changes, checks] = await Promise.all([
    api(`/api/streams/${enc}/changes?from=${from}`),
    api(`/api/streams/${enc}/checks?from=${from}&limit=50`),
  ]);
  drawTimeline(changes, from, now);
  $("h-evidence").replaceChildren(...changes.filter((c) => c.has_thumbnail).slice(0, 12).flatMap(evidenceFigures));
  $("h-checks").replaceChildren(...checks.map(checkRow));
  h.before = checks.length ? checks[checks.length - 1].id : null;
  $("h-more").hidden = checks.length < 50;
}

function drawTimeline(changes, from, now) {
  // Changes come newest first; walk oldest first and paint each state's share of the range.
  const sorted = [...changes].reverse();
  const box = $("h-timeline");
  box.replaceChildren();
  // History starts at the first recorded change when that is inside the range (a new stream).
  if (sorted.length && sorted[0].from_status === "unknown") from = Math.max(from, Date.parse(sorted[0].at) / 1000);
  let cursor = from, current = sorted.length ? sorted[0].from_status : (state.streams.get(state.history.id) || {}).status || "unknown";
  const span = Math.max(1, now - from);
  const push = (until, st) => {
    const width = Math.max(0, (until - cursor) / span * 100);
    if (width > 0) {
      const part = el("span", { class: st, title: `${st} until ${fmtTime(new Date(until * 1000).toISOString())}` });
      part.style.width = `${width}%`;  // CSSOM, not a style attribute: the CSP allows no inline styles
      box.append(part);
    }
    cursor = until;
  };
  for (const c of sorted) {
    const t = Date.parse(c.at) / 1000;
    push(Math.max(t, from), current);
    current = c.pending ? "pending" : c.to_status;
  }
  push(now, current);
}

function checkRow(c) {
  const st = c.pending ? "pending" : c.status;
  const ms = (v) => (v === undefined || v === null ? "–" : `${Math.round(v)} ms`);
  return el("tr", {},
    el("td", { text: fmtTime(c.at) }), el("td", { text: c.mode }),
    el("td", {}, el("span", { class: `badge st-${st}`, text: st })), el("td", { text: c.reason }), el("td", { text: c.phase || "" }),
    el("td", { text: ms(c.connect_ms) }), el("td", { text: ms(c.first_frame_ms) }),
    el("td", { text: c.width ? `${c.width}×${c.height}${c.fps ? ` ${c.fps.toFixed(1)} fps` : ""}` : "" }),
    el("td", { text: c.message }));
}

async function moreChecks() {
  const h = state.history;
  if (!h.before) return;
  const from = Math.floor(Date.now() / 1000 - Number($("h-range").value));
  const checks = await api(`/api/streams/${encodeURIComponent(h.id)}/checks?from=${from}&before=${h.before}&limit=50`);
  $("h-checks").append(...checks.map(checkRow));
  h.before = checks.length ? checks[checks.length - 1].id : null;
  $("h-more").hidden = checks.length < 50;
}

function startPreview() {
  const img = $("h-preview-img"), msg = $("h-preview-msg");
  $("h-preview-box").hidden = false;
  msg.textContent = "Connecting…";
  img.onload = () => { msg.textContent = ""; };
  img.onerror = async () => {
    const s = state.streams.get(state.history.id) || {};
    msg.textContent = `No picture (${s.reason || "error"}${s.message ? `: ${s.message}` : ""}).`;
  };
  img.src = `/api/streams/${encodeURIComponent(state.history.id)}/preview?seconds=5&t=${Date.now()}`;
}

// ---------- legend ----------
async function openLegend() {
  if (!state.legend) state.legend = await api("/api/legend");
  $("legend-statuses").replaceChildren(...state.legend.statuses.map((s) =>
    el("div", {}, el("span", { class: `badge st-${s.key}`, text: s.key }), el("span", { text: s.meaning }))));
  $("legend-reasons").replaceChildren(...state.legend.reasons.map((r) =>
    el("tr", {}, el("td", {}, el("code", { text: r.key })), el("td", {}, el("span", { class: `badge st-${r.status}`, text: r.status })),
      el("td", { text: r.meaning }))));
  $("legend").showModal();
}

// ---------- export ----------
function exportLink() {
  const params = new URLSearchParams();
  const range = Number($("x-range").value);
  if (range) params.set("from", String(Math.floor(Date.now() / 1000 - range)));
  if ($("x-scope").value === "filter") params.set("streams", filtered().map((s) => s.id).join(","));
  params.set("timezone", state.tz);
  $("x-link").href = `/api/export.csv?${params}`;
}

// ---------- settings ----------
async function openSettings() {
  $("s-message").textContent = "";
  $("s-token-new").hidden = true;
  await Promise.all([loadUsers(), loadTokens(), loadPlugins(), loadSettings()]).catch((e) => { $("s-message").textContent = e.message; });
  $("settings-dialog").showModal();
}

async function loadUsers() {
  const users = await api("/api/users");
  $("s-users").replaceChildren(...users.map((u) => {
    const role = el("select", { "aria-label": `Role of ${u.name}` }, el("option", { value: "viewer", text: "viewer" }), el("option", { value: "admin", text: "admin" }));
    role.value = u.role;
    role.onchange = () => api(`/api/users/${u.id}`, { method: "PATCH", body: { role: role.value } }).then(loadUsers).catch((e) => { $("s-message").textContent = e.message; loadUsers(); });
    const del = el("button", { text: "Delete" });
    del.onclick = () => confirm(`Delete user ${u.name}?`) && api(`/api/users/${u.id}`, { method: "DELETE" }).then(loadUsers).catch((e) => { $("s-message").textContent = e.message; });
    const reset = el("button", { text: "Reset password" });
    reset.onclick = () => {
      const pw = prompt(`New first password for ${u.name} (≥ 10 characters; they must change it at sign-in)`);
      if (pw) api(`/api/users/${u.id}`, { method: "PATCH", body: { password: pw } }).then(() => { $("s-message").textContent = `Password of ${u.name} reset.`; }).catch((e) => { $("s-message").textContent = e.message; });
    };
    return el("tr", {}, el("td", { text: u.name + (u.must_change ? " (must change password)" : "") }), el("td", {}, role), el("td", {}, reset, " ", del));
  }));
}

async function loadTokens() {
  const tokens = await api("/api/tokens");
  $("s-tokens").replaceChildren(...tokens.map((t) => {
    const del = el("button", { text: "Revoke" });
    del.onclick = () => api(`/api/tokens/${t.id}`, { method: "DELETE" }).then(loadTokens).catch((e) => { $("s-message").textContent = e.message; });
    return el("tr", {}, el("td", { text: t.name }), el("td", { text: t.role }), el("td", { text: t.owner || "(command line)" }),
      el("td", { text: t.last_used ? fmtTime(t.last_used) : "never" }), el("td", {}, del));
  }));
}

async function loadPlugins() {
  const p = await api("/api/plugins");
  $("s-plugins").replaceChildren(
    ...p.loaded.map((d) => el("li", { text: `${d.name} ${d.version} — schemes ${d.schemes.join(", ")}` })),
    ...p.refused.map((r) => el("li", { class: "message", text: `refused ${r.file}: ${r.reason}` })));
}

async function loadSettings() {
  const s = await api("/api/settings");
  const select = $("s-tz");
  if (!select.options.length || ![...select.options].some((o) => o.value === s.timezone_default)) {
    select.replaceChildren(...zones(s.timezone_default).map((z) => el("option", { value: z, text: z })));
  }
  select.value = s.timezone_default;
}

// ---------- incidents ----------
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function incidentSummary(i) {
  const end = i.resolved ? new Date(i.resolved) : new Date();
  return duration((end - new Date(i.started)) / 1000);
}

function deliveriesText(i) {
  const parts = Object.entries(i.deliveries || {}).map(([name, d]) =>
    d.state === "failed" ? `${name}: failed, ${d.retries} retries` : `${name}: ${d.state}`);
  return parts.join(" · ") || "—";
}

async function refreshIncidentCount() {
  try {
    const open = await api("/api/incidents?state=open&limit=1000");
    $("n-incidents").textContent = String(open.length);
    $("incidents").classList.toggle("bad", open.length > 0);
  } catch { /* shown on the next refresh */ }
}

async function openIncidents() {
  $("i-message").textContent = "";
  const admin = state.session && state.session.role === "admin";
  $("i-silence-form").hidden = !admin;
  const groups = [...new Set([...state.streams.values()].map((s) => s.group).filter(Boolean))].sort();
  $("i-silence-group").replaceChildren(...groups.map((g) => el("option", { value: g, text: g })));
  $("incidents-dialog").showModal();
  loadChannels().catch((e) => { $("i-message").textContent = e.message; });
  await loadIncidents();
}

async function loadIncidents() {
  const list = await api("/api/incidents?limit=100");
  $("i-empty").hidden = list.length > 0;
  $("i-rows").replaceChildren(...list.map(({ incident: i, has_evidence: evidence }) => {
    const st = i.resolved ? "ok" : i.status;
    const tr = el("tr", { "data-incident": String(i.id), "data-open": i.resolved ? "false" : "true" });
    const title = el("td", {}, el("div", { class: "name", text: i.title }),
      el("div", { class: "small", text: `${i.message} · ${(i.streams || []).length} stream(s)` }));
    if (evidence) title.append(el("a", { href: `/api/incidents/${i.id}/evidence.jpg`, target: "_blank", rel: "noopener", text: "evidence" }));
    let ack;
    if (i.acknowledged_by) {
      ack = el("td", { class: "acked", text: `${i.acknowledged_by}${i.acknowledge_comment ? `: ${i.acknowledge_comment}` : ""}` });
    } else if (!i.resolved) {
      const comment = el("input", { placeholder: "comment", maxlength: "500", class: "ack-comment", "aria-label": "Acknowledgement comment" });
      const button = el("button", { class: "ack", text: "Acknowledge" });
      button.onclick = async () => {
        try { await api(`/api/incidents/${i.id}/ack`, { method: "POST", body: { comment: comment.value } }); await loadIncidents(); refreshIncidentCount(); }
        catch (err) { $("i-message").textContent = err.message; }
      };
      ack = el("td", {}, comment, button);
    } else ack = el("td", { text: "—" });
    tr.append(el("td", { text: fmtTime(i.started) }), title,
      el("td", {}, el("span", { class: `badge st-${st}`, text: i.resolved ? "resolved" : i.status })),
      el("td", { text: incidentSummary(i) }), el("td", { class: "small", text: deliveriesText(i) }), ack);
    return tr;
  }));
  const silences = await api("/api/silences");
  const admin = state.session && state.session.role === "admin";
  $("i-silences").replaceChildren(...silences.map((x) => {
    const what = [...x.match.groups.map((g) => `group ${g}`), ...x.match.streams, ...x.match.tags.map((t) => `tag ${t}`)].join(", ");
    const li = el("li", { "data-silence": String(x.id), text: `${what} until ${fmtTime(x.until)} (${x.by}${x.comment ? `: ${x.comment}` : ""}) ` });
    if (admin) {
      const end = el("button", { text: "End" });
      end.onclick = () => api(`/api/silences/${x.id}`, { method: "DELETE" }).then(loadIncidents).catch((e) => { $("i-message").textContent = e.message; });
      li.append(end);
    }
    return li;
  }));
}

async function loadChannels() {
  const admin = state.session && state.session.role === "admin";
  const channels = await api("/api/notify/channels");
  $("i-channels").replaceChildren(...(channels.length ? channels.map((c) => {
    const li = el("li", { "data-channel": c.name, class: c.failing ? "failing" : "",
      text: `${c.name} (${c.type}): ${c.sent} sent, ${c.failed} failed${c.retries ? `, ${c.retries} retries` : ""}${c.failing && c.last_error ? ` — ${c.last_error}` : ""} ` });
    if (admin) {
      const test = el("button", { class: "test-channel", text: "Send test notification" });
      test.onclick = async () => {
        test.disabled = true;
        $("i-message").textContent = `Sending a test notification to ${c.name}…`;
        try {
          await api("/api/notify/test", { method: "POST", body: { channel: c.name } });
          $("i-message").textContent = `${c.name}: delivered.`;
        } catch (err) { $("i-message").textContent = `${c.name}: not delivered: ${err.message}`; }
        test.disabled = false;
        loadChannels().catch(() => {});
      };
      li.append(test);
    }
    return li;
  }) : [el("li", { text: "No channels in config.yaml (notify.channels)." })]));
}

async function loadStreamIncidents(id) {
  try {
    const list = await api(`/api/incidents?stream=${encodeURIComponent(id)}&limit=10`);
    $("h-incidents-box").hidden = list.length === 0;
    $("h-incidents").replaceChildren(...list.map(({ incident: i }) =>
      el("li", { text: `${fmtTime(i.started)} · ${i.title} · ${i.resolved ? `resolved after ${incidentSummary(i)}` : `open for ${incidentSummary(i)}`}` })));
  } catch { $("h-incidents-box").hidden = true; }
}

// ---------- wiring ----------
function wireStatic() {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-message").textContent = "";
    $("login-submit").disabled = true;
    try {
      const info = await api("/api/login", { method: "POST", body: { name: $("login-name").value, password: $("login-password").value } });
      state.session = info;
      if (info.must_change_password) showChange(); else await enterDashboard();
    } catch (err) {
      $("login-message").textContent = err.message;
    } finally { $("login-submit").disabled = false; }
  });
  $("change-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = $("change-message");
    if ($("change-new").value !== $("change-again").value) { msg.textContent = "The new passwords differ."; return; }
    try {
      state.session = await api("/api/me/password", { method: "POST", body: { current: $("change-current").value, new: $("change-new").value } });
      msg.textContent = "";
      await enterDashboard();
    } catch (err) { msg.textContent = err.message; }
  });
  $("logout").onclick = async () => { try { await api("/api/logout", { method: "POST" }); } catch {} showLogin("Signed out."); };
  for (const id of ["search", "f-status", "f-protocol", "f-site", "f-group", "f-tag", "sort", "page-size"]) {
    $(id).addEventListener("input", () => { state.page = 0; scheduleRender(); });
  }
  for (const b of document.querySelectorAll(".count")) {
    b.addEventListener("click", () => { $("f-status").value = $("f-status").value === b.dataset.status ? "" : b.dataset.status; state.page = 0; render(); });
  }
  $("prev").onclick = () => { state.page = Math.max(0, state.page - 1); render(); };
  $("next").onclick = () => { state.page += 1; render(); };
  for (const b of document.querySelectorAll("[data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
  $("history").addEventListener("close", () => { $("h-preview-img").removeAttribute("src"); state.history = null; });
  $("h-range").onchange = () => loadHistory();
  $("h-more").onclick = () => moreChecks();
  $("h-preview").onclick = () => startPreview();
  $("h-accept-profile").onclick = () => baselineAction("profile/accept", "Accepted: the current profile is now the normal one.");
  $("h-set-reference").onclick = () => baselineAction("reference", "The next decoded picture becomes the reference.");
  $("info").onclick = () => openLegend();
  $("incidents").onclick = () => openIncidents();
  $("i-silence-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/silences", { method: "POST", body: { groups: [$("i-silence-group").value], seconds: Number($("i-silence-for").value),
        comment: $("i-silence-comment").value } });
      $("i-silence-comment").value = "";
      $("i-message").textContent = `Group ${$("i-silence-group").value} silenced.`;
      await loadIncidents();
      // The shared stream list is at most 2 s old: read it again once it carries the maintenance marks.
      setTimeout(() => loadStreams().catch(() => {}), 2500);
    } catch (err) { $("i-message").textContent = err.message; }
  });
  $("export").onclick = () => { exportLink(); $("export-dialog").showModal(); };
  $("x-scope").onchange = exportLink;
  $("x-range").onchange = exportLink;
  $("settings").onclick = () => openSettings();
  $("s-user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/users", { method: "POST", body: { name: $("s-user-name").value, role: $("s-user-role").value, password: $("s-user-password").value } });
      $("s-user-form").reset();
      $("s-message").textContent = "User added; they choose their own password at first sign-in.";
      await loadUsers();
    } catch (err) { $("s-message").textContent = err.message; }
  });
  $("s-token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const created = await api("/api/tokens", { method: "POST", body: { name: $("s-token-name").value, role: $("s-token-role").value } });
      const box = $("s-token-new");
      box.textContent = `New token (shown only now): ${created.token}`;
      box.hidden = false;
      $("s-token-form").reset();
      await loadTokens();
    } catch (err) { $("s-message").textContent = err.message; }
  });
  $("s-tz-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/settings", { method: "PUT", body: { timezone_default: $("s-tz").value } });
      $("s-message").textContent = "Default time zone saved.";
    } catch (err) { $("s-message").textContent = err.message; }
  });
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => console.error(e)); });
