// UltraChat operator dashboard: sign-in, the live metrics stream, the charts.
//
// A plain ES module, no build step. uPlot (vendor/uPlot-<version>.iife.min.js) is loaded by a
// classic deferred script before this module runs and is read from globalThis. Every piece of
// data comes from admin-only APIs; the page itself holds none.
//
// Tokens: the access and refresh tokens live in this module's memory only, never in
// localStorage or sessionStorage, so nothing is left at rest for another script, tab or a
// later visitor of this browser profile to read. A reload signs out, which is acceptable on a
// one-page dashboard. The access token is refreshed shortly before it expires and on a 401,
// one refresh at a time (the server treats two concurrent refreshes of one token as reuse).

const API = "/api/v1";
const LIVE_URL = `${API}/admin/live`;
const WINDOW_SECONDS = 300; // the rolling window the charts show
const MAX_POINTS = 2000; // a bound on memory whatever the server's interval
const STALL_MS = 15000; // no byte for this long: the stream is dead, reconnect
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const CHART_HEIGHT = 190;

const COLORS = {
  blue: "#5b9dff",
  green: "#3ecf8e",
  amber: "#f5b942",
  red: "#ff6b6b",
  violet: "#a78bfa",
  teal: "#2dd4bf",
};
const AXIS = "#8b98ab";
const GRID = "rgba(139, 152, 171, 0.14)";
const FONT = "11px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function decimals(v) {
  const a = Math.abs(v);
  if (a === 0 || a >= 100) return 0;
  if (a >= 10) return 1;
  return 2;
}

const fmt = {
  int: (v) => (isNum(v) ? intFormat.format(v) : "—"),
  rate: (v) => (isNum(v) ? `${v.toFixed(decimals(v))}/s` : "—"),
  ms: (v) => (isNum(v) ? `${v.toFixed(decimals(v))} ms` : "—"),
  // A fraction (0..1) shown as a percentage, with enough digits for a tiny error rate.
  fraction: (v) => (isNum(v) ? fmt.pct(v * 100) : "—"),
  pct: (v) => {
    if (!isNum(v)) return "—";
    if (v === 0) return "0%";
    const a = Math.abs(v);
    return `${v.toFixed(a < 0.1 ? 3 : a < 10 ? 2 : 1)}%`;
  },
  bytes: (v) => {
    if (!isNum(v)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let n = v;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${n.toFixed(i === 0 ? 0 : decimals(n) || 1)} ${units[i]}`;
  },
  // An SLO's value: its unit is in its target's text, so only the number is shown.
  plain: (v) => (isNum(v) ? (Number.isInteger(v) ? intFormat.format(v) : String(+v.toPrecision(4))) : "—"),
};

const axisFmt = {
  int: (v) => intFormat.format(v),
  num: (v) => String(+v.toFixed(2)),
  pct: (v) => `${+v.toFixed(3)}%`,
  bytes: (v) => fmt.bytes(v).replace(/\.0+ /, " "),
  time: (t) => new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false }),
};

// ---------------------------------------------------------------- what is shown

const pctOf = (v) => (isNum(v) ? v * 100 : null);

// Each chart: its series read a number out of one event; `key` names it in the DOM
// (data-metric, with the event's own value in data-value) so a test or a person can read it.
const CHARTS = [
  {
    id: "messages",
    title: "Messages / s",
    range: [0, 1],
    axis: axisFmt.num,
    series: [
      { key: "messages_per_s", label: "in", color: COLORS.blue, get: (e) => e.messages_per_s, show: fmt.rate, fill: true },
      { key: "deliveries_per_s", label: "delivered", color: COLORS.teal, dash: [6, 4], get: (e) => e.deliveries_per_s, show: fmt.rate },
    ],
  },
  {
    id: "connections",
    title: "Connections",
    range: [0, 5],
    axis: axisFmt.int,
    series: [
      { key: "connections", label: "WebSockets", color: COLORS.violet, get: (e) => e.connections, show: fmt.int, fill: true },
      { key: "active_users", label: "active users", color: COLORS.blue, get: (e) => e.active_users, show: fmt.int },
    ],
  },
  {
    id: "latency",
    title: "Request latency",
    range: [0, 10],
    axis: (v) => `${axisFmt.num(v)} ms`,
    series: [
      { key: "latency_p50", label: "p50", color: COLORS.green, get: (e) => e.latency_ms?.p50, show: fmt.ms },
      { key: "latency_p95", label: "p95", color: COLORS.amber, get: (e) => e.latency_ms?.p95, show: fmt.ms },
      { key: "latency_p99", label: "p99", color: COLORS.red, get: (e) => e.latency_ms?.p99, show: fmt.ms },
    ],
  },
  {
    id: "errors",
    title: "Error rate",
    range: [0, 1, 100],
    axis: axisFmt.pct,
    series: [
      { key: "error_rate", label: "of requests", color: COLORS.red, get: (e) => e.error_rate, plot: pctOf, show: fmt.fraction, fill: true },
      { key: "requests_per_s", label: "requests", color: AXIS, get: (e) => e.requests_per_s, show: fmt.rate, legendOnly: true },
    ],
  },
  {
    id: "cache",
    title: "Cache hit rate",
    range: [0, 100],
    fixed: true,
    axis: axisFmt.pct,
    series: [
      { key: "cache_hit_rate", label: "hits", color: COLORS.green, get: (e) => e.cache_hit_rate, plot: pctOf, show: fmt.fraction, fill: true },
    ],
  },
  {
    id: "cpu",
    title: "CPU",
    range: [0, 10, 100], // the process may use more than one core: past 100 the axis grows
    axis: axisFmt.pct,
    series: [
      { key: "cpu_process", label: "process", color: COLORS.blue, get: (e) => e.cpu_percent?.process, show: fmt.pct, fill: true },
      { key: "cpu_host", label: "host", color: COLORS.amber, get: (e) => e.cpu_percent?.host, show: fmt.pct },
    ],
  },
  {
    id: "memory",
    title: "Memory",
    range: [0, 64 * 1024 * 1024],
    bytes: true,
    axis: axisFmt.bytes,
    // Host memory is GiBs and the process's MiBs: the host's share goes on a right-hand axis.
    right: { range: [0, 100], axis: axisFmt.pct },
    series: [
      { key: "memory_process", label: "process", color: COLORS.violet, get: (e) => e.memory_bytes?.process, show: fmt.bytes, fill: true },
      {
        key: "memory_host_used",
        label: "host used",
        color: COLORS.amber,
        right: true,
        get: (e) => e.memory_bytes?.host_used,
        plot: (v, e) => (isNum(v) && e.memory_bytes?.host_total ? (v / e.memory_bytes.host_total) * 100 : null),
        show: (v, e) => (isNum(v) ? `${fmt.bytes(v)} of ${fmt.bytes(e?.memory_bytes?.host_total)}` : "—"),
      },
    ],
  },
];

const TILES = [
  { key: "connections", label: "Connections", get: (e) => e.connections, show: fmt.int, sub: (e) => `${fmt.int(e.active_users)} active users` },
  { key: "requests_per_s", label: "Requests", get: (e) => e.requests_per_s, show: fmt.rate, sub: (e) => `${fmt.fraction(e.error_rate)} errors` },
  { key: "messages_per_s", label: "Messages in", get: (e) => e.messages_per_s, show: fmt.rate, sub: (e) => `${fmt.rate(e.deliveries_per_s)} delivered` },
  { key: "latency_p95", label: "Latency p95", get: (e) => e.latency_ms?.p95, show: fmt.ms, sub: (e) => `p50 ${bare(fmt.ms(e.latency_ms?.p50))} · p99 ${bare(fmt.ms(e.latency_ms?.p99))}` },
  { key: "error_rate", label: "Error rate", get: (e) => e.error_rate, show: fmt.fraction, sub: () => "of requests" },
  { key: "cache_hit_rate", label: "Cache hit rate", get: (e) => e.cache_hit_rate, show: fmt.fraction, sub: () => "read cache" },
  { key: "cpu_process", label: "CPU", get: (e) => e.cpu_percent?.process, show: fmt.pct, sub: (e) => `host ${fmt.pct(e.cpu_percent?.host)}` },
  { key: "memory_process", label: "Memory", get: (e) => e.memory_bytes?.process, show: fmt.bytes, sub: (e) => `host ${bytesOf(e.memory_bytes?.host_used, e.memory_bytes?.host_total)}` },
];

const bare = (text) => text.replace(/ ms$/, "");

// "8.4 / 23.3 GiB": a part of a whole, the unit said once when both share it.
function bytesOf(part, whole) {
  const [a, b] = [fmt.bytes(part), fmt.bytes(whole)];
  const unit = (text) => text.split(" ")[1];
  return unit(a) === unit(b) ? `${a.split(" ")[0]} / ${b}` : `${a} / ${b}`;
}

// ---------------------------------------------------------------- DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-")) node.dataset[toCamel(name.slice(5))] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const toCamel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

function setValue(node, raw, text) {
  node.dataset.value = isNum(raw) ? String(raw) : "";
  node.classList.toggle("no-data", !isNum(raw));
  node.textContent = text;
}

// ---------------------------------------------------------------- views

const session = {
  access: null,
  refresh: null,
  user: null,
  refreshing: null,
  refreshTimer: 0,
  generation: 0, // bumped at each sign-in and sign-out: stale async work checks it and stops
};

function showView(name) {
  $("signin-view").hidden = name !== "signin";
  $("denied-view").hidden = name !== "denied";
  $("dashboard-view").hidden = name !== "dashboard";
  $("session").hidden = name !== "dashboard";
  document.body.dataset.view = name;
}

function showSignIn(message = "", kind = "error") {
  showView("signin");
  const note = $("signin-error");
  note.textContent = message;
  note.hidden = !message;
  note.className = `notice ${kind}`;
  $("password").value = "";
  $("username").focus();
}

function showDenied(username) {
  $("denied-user").textContent = username || "This account";
  showView("denied");
}

// ---------------------------------------------------------------- the auth API

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function apiError(response) {
  let code = "error";
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body?.error) ({ code, message } = body.error);
  } catch {
    // not our envelope: keep the status line
  }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

function postJSON(path, body) {
  return fetch(`${API}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    cache: "no-store",
  });
}

function storeTokens(pair) {
  session.access = pair.access_token;
  session.refresh = pair.refresh_token;
  clearTimeout(session.refreshTimer);
  // Refresh a minute before expiry (a fifth of the lifetime when that is shorter).
  const lifetime = Number(pair.expires_in) || 300;
  const lead = Math.min(60, lifetime * 0.2);
  scheduleRefresh(Math.max(5, lifetime - lead) * 1000);
}

function scheduleRefresh(delayMs) {
  clearTimeout(session.refreshTimer);
  const generation = session.generation;
  session.refreshTimer = setTimeout(async () => {
    if (generation !== session.generation) return;
    const outcome = await refreshTokens();
    if (outcome === "offline") scheduleRefresh(10000);
    else if (outcome === "expired") endSession("Your session has ended. Sign in again.");
  }, delayMs);
}

// One refresh in flight at a time; resolves to "ok", "expired" or "offline".
function refreshTokens() {
  if (!session.refreshing) {
    const generation = session.generation;
    session.refreshing = (async () => {
      try {
        const response = await postJSON("/auth/refresh", { refresh_token: session.refresh });
        if (generation !== session.generation) return "expired";
        if (response.ok) {
          storeTokens(await response.json());
          return "ok";
        }
        return response.status === 401 ? "expired" : "offline";
      } catch {
        return "offline";
      } finally {
        session.refreshing = null;
      }
    })();
  }
  return session.refreshing;
}

// fetch with the access token; on a 401, refresh once and try again.
async function authorized(url, init = {}) {
  const send = () =>
    fetch(url, {
      ...init,
      headers: { ...(init.headers || {}), Authorization: `Bearer ${session.access}` },
    });
  const response = await send();
  if (response.status !== 401 || !session.refresh) return response;
  await response.body?.cancel();
  return (await refreshTokens()) === "ok" ? send() : response;
}

async function signIn(username, password) {
  const response = await postJSON("/auth/login", { username, password });
  if (!response.ok) throw await apiError(response);
  const generation = ++session.generation;
  storeTokens(await response.json());
  const me = await authorized(`${API}/users/me`, { cache: "no-store" });
  if (!me.ok) throw await apiError(me);
  session.user = await me.json();
  if (generation !== session.generation) return;
  if (session.user.role !== "admin") {
    // This session is of no use here: end it on the server too.
    const name = session.user.username;
    endSession();
    showDenied(name);
    return;
  }
  $("whoami").textContent = session.user.username;
  showView("dashboard");
  buildDashboard();
  runStream(generation);
}

// Forget the tokens, stop the stream and the charts, and revoke the session on the server.
function endSession(message) {
  const token = session.access;
  session.generation += 1;
  clearTimeout(session.refreshTimer);
  session.access = session.refresh = session.user = null;
  stream.controller?.abort();
  teardownDashboard();
  if (token) {
    fetch(`${API}/auth/logout`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    }).catch(() => {});
  }
  if (message !== undefined) showSignIn(message, "info");
}

function signInMessage(error) {
  if (!(error instanceof ApiError)) return "Cannot reach the server. Check the connection and try again.";
  if (error.status === 401) return "Wrong username or password.";
  if (error.status === 429) {
    const wait = error.retryAfter ? ` in ${error.retryAfter} s` : " later";
    return `Too many attempts. Try again${wait}.`;
  }
  return error.message;
}

// ---------------------------------------------------------------- the live stream

const stream = { controller: null, lastAt: null };

function setStreamState(state, detail = "") {
  const pill = $("stream-state");
  pill.dataset.state = state;
  pill.textContent = detail ? `${state} · ${detail}` : state;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function backoff(failures) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (failures - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5)); // jitter: nodes' clients don't herd
}

// Read the stream until it ends or fails, reconnecting with backoff, until signed out.
async function runStream(generation) {
  let failures = 0;
  while (generation === session.generation) {
    setStreamState(failures === 0 ? "connecting" : "reconnecting");
    const controller = new AbortController();
    stream.controller = controller;
    let outcome;
    try {
      outcome = await readStream(controller, generation, () => {
        failures = 0;
      });
    } catch {
      outcome = "dropped";
    }
    if (generation !== session.generation) return;
    if (outcome === "forbidden") {
      const name = session.user?.username;
      endSession();
      showDenied(name);
      return;
    }
    if (outcome === "unauthorized") {
      endSession("Your session has ended. Sign in again.");
      return;
    }
    failures += 1;
    markGap();
    const delay = backoff(failures);
    setStreamState("reconnecting", `retry in ${Math.ceil(delay / 1000)} s`);
    await sleep(delay);
  }
}

async function readStream(controller, generation, onEvent) {
  const response = await authorized(LIVE_URL, {
    headers: { Accept: "text/event-stream" },
    cache: "no-store",
    signal: controller.signal,
  });
  if (response.status === 403) return "forbidden";
  if (response.status === 401) return "unauthorized";
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    return "dropped";
  }
  let watchdog = 0;
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => controller.abort(), STALL_MS);
  };
  arm();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || generation !== session.generation) return "dropped";
      arm();
      buffer += value;
      // Frames end with a blank line; a frame may arrive in pieces or several at once.
      for (let end = /\r\n\r\n|\n\n|\r\r/.exec(buffer); end; end = /\r\n\r\n|\n\n|\r\r/.exec(buffer)) {
        const data = frameData(buffer.slice(0, end.index));
        buffer = buffer.slice(end.index + end[0].length);
        if (data === null) continue;
        onEvent();
        setStreamState("live");
        ingest(data);
      }
    }
  } finally {
    clearTimeout(watchdog);
    reader.cancel().catch(() => {});
  }
}

// The JSON of one SSE frame's data lines; null for comments, other fields or bad JSON.
function frameData(frame) {
  const lines = frame.split(/\r\n|\r|\n/).filter((line) => line.startsWith("data:"));
  if (lines.length === 0) return null;
  const text = lines.map((line) => line.slice(line[5] === " " ? 6 : 5)).join("\n");
  try {
    return JSON.parse(text);
  } catch {
    console.warn("dashboard: an event that is not JSON was skipped");
    return null;
  }
}

// ---------------------------------------------------------------- samples and charts

let samples = []; // {t: unix seconds, e: event, or null for a gap while reconnecting}
let charts = [];
let tiles = new Map();
let resizer = null;

function ingest(event) {
  const t = Date.parse(event.at) / 1000;
  if (!Number.isFinite(t)) return;
  const last = samples.at(-1);
  if (last && t <= last.t) return; // a repeat after a reconnect
  samples.push({ t, e: event });
  const cutoff = t - WINDOW_SECONDS;
  let drop = 0;
  while (drop < samples.length && samples[drop].t < cutoff) drop += 1;
  drop = Math.max(drop, samples.length - MAX_POINTS);
  if (drop > 0) samples.splice(0, drop);
  while (samples.length && samples[0].e === null) samples.shift();
  render(event);
}

// A null row breaks the lines where the stream was down, instead of drawing across the gap.
function markGap() {
  const last = samples.at(-1);
  if (last && last.e !== null) samples.push({ t: last.t + 0.001, e: null });
}

// [low, soft max, cap]: the top is at least the soft max, rounds up, and stops at the cap
// while the data stays under it (a 99% CPU reading gets a 100% axis, not 200%).
function softRange([low, softMax, cap = Infinity]) {
  return (u, min, max) => {
    const top = niceCeil(Math.max(isNum(max) ? max * 1.1 : 0, softMax));
    return [low, isNum(max) && max <= cap ? Math.min(top, cap) : top];
  };
}

// Byte scales end on a round number of KiB, MiB or GiB, split in quarters.
function bytesRange([, softMax]) {
  return (u, min, max) => {
    const top = Math.max(isNum(max) ? max * 1.1 : 0, softMax);
    let unit = 1;
    while (top / unit >= 1024) unit *= 1024;
    return [0, niceCeil(top / unit) * unit];
  };
}

const quarters = (u, axis, min, max) => [0, 1, 2, 3, 4].map((i) => min + ((max - min) * i) / 4);

function niceCeil(v) {
  if (v <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= v) return step * magnitude;
  return 10 * magnitude;
}

function buildDashboard() {
  teardownDashboard();
  const tileRow = $("tiles");
  for (const def of TILES) {
    const value = el("div", { class: "tile-value", "data-tile": def.key, text: "—" });
    const sub = el("div", { class: "tile-sub muted", text: "" });
    tileRow.append(el("div", { class: "tile card" }, el("div", { class: "tile-label", text: def.label }), value, sub));
    tiles.set(def.key, { def, value, sub });
  }
  const grid = $("charts");
  const sloCard = $("slo-panel");
  for (const def of CHARTS) {
    const legend = el("div", { class: "legend" });
    const values = new Map();
    for (const s of def.series) {
      const swatch = el("i", { class: "swatch" });
      swatch.style.setProperty("--swatch", s.color);
      const value = el("b", { "data-metric": s.key, text: "—" });
      legend.append(el("span", { class: s.legendOnly ? "legend-item legend-only" : "legend-item" }, swatch, el("span", { text: s.label }), value));
      values.set(s.key, value);
    }
    const plotArea = el("div", { class: "chart" });
    const card = el(
      "article",
      { class: "card chart-card", id: `chart-${def.id}`, "data-points": "0" },
      el("header", { class: "card-head" }, el("h3", { text: def.title }), legend),
      plotArea,
    );
    grid.insertBefore(card, sloCard);
    charts.push({ def, card, plotArea, values, plot: makePlot(def, plotArea) });
  }
  resizer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = charts.find((c) => c.plotArea === entry.target);
      const width = Math.floor(entry.contentRect.width);
      if (chart && width > 0 && width !== chart.plot.width) chart.plot.setSize({ width, height: CHART_HEIGHT });
    }
  });
  for (const chart of charts) resizer.observe(chart.plotArea);
  setStreamState("connecting");
  $("last-update").textContent = "";
}

function teardownDashboard() {
  resizer?.disconnect();
  resizer = null;
  for (const chart of charts) {
    chart.plot.destroy();
    chart.card.remove();
  }
  charts = [];
  tiles = new Map();
  samples = [];
  $("tiles").replaceChildren();
  $("slo-rows").replaceChildren(el("tr", { class: "slo-empty" }, el("td", { colspan: "4", class: "muted", text: "waiting for the first sample…" })));
  $("slo-summary").textContent = "";
}

function makePlot(def, target) {
  const axis = {
    stroke: AXIS,
    font: FONT,
    grid: { stroke: GRID, width: 1 },
    ticks: { stroke: GRID, width: 1, size: 4 },
  };
  const yRange = def.fixed ? () => def.range : def.bytes ? bytesRange(def.range) : softRange(def.range);
  const scales = { x: { time: true }, y: { range: yRange } };
  const axes = [
    { ...axis, size: 30, space: 70, values: (u, splits) => splits.map(axisFmt.time) },
    {
      ...axis,
      size: 64,
      ...(def.bytes ? { splits: quarters } : {}),
      values: (u, splits) => splits.map((v) => def.axis(v)),
    },
  ];
  if (def.right) {
    scales.right = { range: () => def.right.range };
    axes.push({
      ...axis,
      scale: "right",
      side: 1,
      size: 48,
      grid: { show: false },
      splits: quarters,
      values: (u, splits) => splits.map((v) => def.right.axis(v)),
    });
  }
  const plotted = def.series.filter((s) => !s.legendOnly);
  const opts = {
    width: Math.max(240, Math.floor(target.clientWidth)),
    height: CHART_HEIGHT,
    padding: [10, def.right ? 4 : 14, 0, 2],
    legend: { show: false },
    cursor: { drag: { x: false, y: false, setScale: false } },
    scales,
    axes,
    series: [
      {},
      ...plotted.map((s) => ({
        label: s.label,
        scale: s.right ? "right" : "y",
        stroke: s.color,
        width: 2,
        ...(s.dash ? { dash: s.dash } : {}),
        ...(s.fill ? { fill: `${s.color}1f` } : {}),
        spanGaps: false,
      })),
    ],
  };
  return new uPlot(opts, [[], ...plotted.map(() => [])], target);
}

function render(event) {
  const xs = samples.map((p) => p.t);
  const points = String(samples.filter((p) => p.e !== null).length);
  for (const chart of charts) {
    const plotted = chart.def.series.filter((s) => !s.legendOnly);
    const columns = plotted.map((s) =>
      samples.map((p) => {
        if (p.e === null) return null;
        const raw = s.get(p.e);
        const y = s.plot ? s.plot(raw, p.e) : raw;
        return isNum(y) ? y : null;
      }),
    );
    chart.plot.setData([xs, ...columns]);
    chart.card.dataset.points = points;
    for (const s of chart.def.series) {
      const raw = s.get(event);
      setValue(chart.values.get(s.key), raw, s.show(raw, event));
    }
  }
  for (const { def, value, sub } of tiles.values()) {
    const raw = def.get(event);
    setValue(value, raw, def.show(raw, event));
    sub.textContent = def.sub(event);
  }
  renderSlos(event.slo || []);
  const at = new Date(event.at);
  $("last-update").textContent = `updated ${at.toLocaleTimeString([], { hour12: false })}`;
}

const STATUS_CLASS = { pass: "pass", fail: "fail", "no data": "nodata" };

function renderSlos(slos) {
  const rows = slos.map((slo) => {
    const status = STATUS_CLASS[slo.status] ? slo.status : "no data";
    const badge = el("span", { class: `badge ${STATUS_CLASS[status]}`, text: status });
    return el(
      "tr",
      { class: `slo-row ${STATUS_CLASS[status]}`, "data-slo": slo.name, "data-status": status },
      el("td", {}, badge),
      el("td", { class: "slo-name", text: slo.name }),
      el("td", { class: "num", text: fmt.plain(slo.value) }),
      el("td", { class: "muted", text: slo.target }),
    );
  });
  if (rows.length === 0) {
    rows.push(el("tr", { class: "slo-empty" }, el("td", { colspan: "4", class: "muted", text: "no objectives reported" })));
  }
  $("slo-rows").replaceChildren(...rows);
  const count = (status) => slos.filter((s) => s.status === status).length;
  const failing = count("fail");
  const parts = [`${count("pass")} of ${slos.length} passing`];
  if (failing) parts.push(`${failing} failing`);
  if (count("no data")) parts.push(`${count("no data")} without data yet`);
  const summary = $("slo-summary");
  summary.textContent = slos.length ? parts.join(" · ") : "";
  summary.dataset.failing = String(failing);
}

// ---------------------------------------------------------------- wiring

function start() {
  if (typeof globalThis.uPlot !== "function") {
    showSignIn("The chart library did not load; reload the page.");
    return;
  }
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      showSignIn("Enter a username and a password.");
      return;
    }
    const button = $("signin-submit");
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      await signIn(username, password);
    } catch (error) {
      if (!(error instanceof ApiError)) console.error("dashboard: sign-in failed", error);
      endSession();
      showSignIn(signInMessage(error));
      $("username").value = username;
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
  $("signout").addEventListener("click", () => endSession("You are signed out."));
  $("denied-back").addEventListener("click", () => showSignIn());
  showSignIn();
}

start();
