// The API client of the pages: JSON over fetch, live WebSocket streams with reconnect, formatting.
// Shapes: streams/api/schemas.py (field names are the contract).

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.status = status;
    this.detail = detail;
  }
}

async function request(method, path, { params, body, apiKey } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiKey) headers["X-API-Key"] = apiKey;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const err = new ApiError(res.status, data && data.detail !== undefined ? data.detail : data);
    err.retryAfter = res.headers.get("Retry-After");
    throw err;
  }
  return data;
}

export const getJSON = (path, params) => request("GET", path, { params });
export const putJSON = (path, body, apiKey) => request("PUT", path, { body, apiKey });

/** Follow a WebSocket stream; reconnects with backoff. Returns {close()}.
 *  onMessage(msg) gets each parsed JSON message; onStatus("live"|"connecting"|"down", code). */
export function follow(path, onMessage, onStatus = () => {}) {
  let ws = null, closed = false, delay = 500;
  const open = () => {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    onStatus("connecting");
    ws = new WebSocket(`${proto}//${window.location.host}${path}`);
    ws.onopen = () => { delay = 500; onStatus("live"); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (closed) return;
      onStatus("down", ev.code);
      if (ev.code === 4404) return;  // unknown battery: retrying cannot help
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
  return { close() { closed = true; if (ws) ws.close(); } };
}

/** Show the stream's state in the header (element #live: a dot and a text). */
export function liveIndicator(el) {
  return (state, code) => {
    if (!el) return;
    const dot = el.querySelector(".dot"), txt = el.querySelector(".txt");
    dot.className = "dot" + (state === "live" ? " live" : state === "down" ? " down" : "");
    txt.textContent = state === "live" ? "live" : state === "down" ? `disconnected${code ? " (" + code + ")" : ""}` : "connecting…";
  };
}

// --- formatting ---------------------------------------------------------------------------

export const RISK_COLORS = { low: "#2fa56a", medium: "#e3a72f", high: "#e0474c", unknown: "#5b677a" };
export const riskOf = (r) => r || "unknown";

export function fmt(v, digits = 1, unit = "") {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return `${Number(v).toFixed(digits)}${unit}`;
}

export function fmtTime(iso, withDate = false) {
  if (!iso) return "–";
  const d = new Date(iso);
  return withDate ? d.toISOString().replace("T", " ").slice(0, 19) + "Z" : d.toISOString().slice(11, 19);
}

export function ago(iso) {
  if (!iso) return "–";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 0) return "now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function riskBadge(risk) {
  const r = riskOf(risk);
  return `<span class="badge risk-${r}">${r}</span>`;
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/** Show an error in the page's banner (#error), or hide it with null. */
export function showError(err) {
  const el = document.getElementById("error");
  if (!el) return;
  el.style.display = err ? "block" : "none";
  el.textContent = err ? String(err.message || err) : "";
}
