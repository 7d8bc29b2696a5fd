// Fleet page: every pack's latest state (GET /api/batteries, paged), kept live by /ws/fleet;
// KPIs and distributions from GET /api/fleet/summary; filters and sorting in the page.
import { getJSON, follow, liveIndicator, fmt, ago, riskBadge, riskOf, esc, showError, RISK_COLORS } from "./api.js";
import { scatterChart, histogramChart } from "./charts.js";

const PAGE = 500;          // packs per request while loading the fleet
const MAX_ROWS = 400;      // table rows drawn (the grid shows every pack)
const SUMMARY_EVERY_MS = 10000;
const RISKS = ["low", "medium", "high", "unknown"];

const fleet = new Map();   // battery_id -> BatteryListItem (updated live)
const touched = new Set(); // ids updated since the last render
let dirty = true, sortKey = "failure_probability", sortAsc = false, updates = 0;

const $ = (id) => document.getElementById(id);
const filters = () => ({ risk: $("f-risk").value, alert: $("f-alert").value, soh: $("f-soh").value, q: $("f-q").value.trim() });

function matches(b, f) {
  if (f.risk && riskOf(b.risk) !== f.risk) return false;
  if (f.alert === "open" && !(b.open_alerts > 0)) return false;
  if (f.alert === "none" && b.open_alerts > 0) return false;
  if (f.soh) {
    const [lo, hi] = f.soh.split("-").map(Number);
    if (b.soh === null || b.soh === undefined || b.soh < lo || b.soh >= (hi === 100 ? 100.001 : hi)) return false;
  }
  if (f.q && !b.battery_id.toLowerCase().startsWith(f.q.toLowerCase())) return false;
  return true;
}

function compare(a, b) {
  let x = a[sortKey], y = b[sortKey];
  if (sortKey === "risk") { x = RISKS.indexOf(riskOf(x)); y = RISKS.indexOf(riskOf(y)); }
  if (x === y) return a.battery_id < b.battery_id ? -1 : 1;
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  return (x < y ? -1 : 1) * (sortAsc ? 1 : -1);
}

function renderTable(list) {
  const rows = list.slice().sort(compare).slice(0, MAX_ROWS);
  $("fleet-table").querySelector("tbody").innerHTML = rows.map((b) => `
    <tr data-battery="${esc(b.battery_id)}" data-time="${esc(b.time)}" class="${touched.has(b.battery_id) ? "flash" : ""}">
      <td><a href="battery.html?id=${encodeURIComponent(b.battery_id)}">${esc(b.battery_id)}</a></td>
      <td>${riskBadge(b.risk)}</td><td>${fmt(b.failure_probability, 2)}</td><td>${fmt(b.rul_cycles, 0)}</td>
      <td>${fmt(b.rul_p10, 0)}–${fmt(b.rul_p90, 0)}</td><td>${fmt(b.soh, 1)}</td><td>${fmt(b.soc, 1)}</td>
      <td>${fmt(b.temperature, 1)}</td><td>${fmt(b.voltage, 1)}</td><td>${fmt(b.current, 1)}</td>
      <td>${b.charge_cycles ?? "–"}</td><td>${b.open_alerts || ""}</td><td class="muted">${ago(b.time)}</td>
    </tr>`).join("") || `<tr><td colspan="13" class="empty">no pack matches</td></tr>`;
  $("table-note").textContent = list.length > MAX_ROWS ? `showing ${MAX_ROWS} of ${list.length} matching packs (sort or filter to see others)` : "";
  document.querySelectorAll("#fleet-table th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.k === sortKey);
    th.classList.toggle("asc", th.dataset.k === sortKey && sortAsc);
  });
}

function renderGrid(list) {
  const grid = $("packgrid");
  const ids = list.map((b) => b.battery_id).sort();
  const existing = new Map([...grid.children].map((a) => [a.dataset.battery, a]));
  if (ids.length !== existing.size || ids.some((id) => !existing.has(id))) {
    grid.innerHTML = ids.map((id) => `<a data-battery="${esc(id)}" href="battery.html?id=${encodeURIComponent(id)}"></a>`).join("");
  }
  for (const a of grid.children) {
    const b = fleet.get(a.dataset.battery);
    a.style.background = RISK_COLORS[riskOf(b.risk)];
    a.classList.toggle("alerting", b.open_alerts > 0);
    a.title = `${b.battery_id} · ${riskOf(b.risk)} risk · p=${fmt(b.failure_probability, 2)} · SoH ${fmt(b.soh, 1)} % · RUL ${fmt(b.rul_cycles, 0)}`;
    if (touched.has(b.battery_id)) { a.classList.remove("pulse"); void a.offsetWidth; a.classList.add("pulse"); }
  }
}

let scatter, rulHist, riskHist;

function renderScatter(list) {
  const groups = RISKS.map(() => []);
  for (const b of list) {
    if (b.soh === null || b.soh === undefined || b.charge_cycles === null || b.charge_cycles === undefined) continue;
    groups[RISKS.indexOf(riskOf(b.risk))].push({ x: b.charge_cycles, y: b.soh, id: b.battery_id });
  }
  for (const g of groups) g.sort((a, b) => a.x - b.x);  // Chart.js reads unparsed data as sorted by x
  scatter.set(groups);
}

function render() {
  if (!dirty) return;
  dirty = false;
  const f = filters();
  const all = [...fleet.values()];
  const list = all.filter((b) => matches(b, f));
  $("fleet-count").textContent = `${list.length} of ${all.length} packs`;
  renderTable(list);
  renderGrid(list);
  renderScatter(list);
  touched.clear();
}

async function loadFleet() {
  let offset = 0, total = Infinity;
  while (offset < total) {
    const page = await getJSON("/api/batteries", { limit: PAGE, offset, sort: "battery_id", order: "asc" });
    for (const b of page.items) {
      const live = fleet.get(b.battery_id);  // a live update may already be newer than the page
      const newer = live && new Date(live.time) > new Date(b.time);
      fleet.set(b.battery_id, newer ? { ...b, ...live, open_alerts: b.open_alerts } : b);
    }
    total = page.total;
    offset += page.items.length;
    if (!page.items.length) break;
  }
  dirty = true;
}

async function loadSummary() {
  try {
    const s = await getJSON("/api/fleet/summary");
    $("kpi-batteries").textContent = s.batteries;
    $("kpi-soh").textContent = fmt(s.soh_avg, 1, " %");
    $("kpi-rul").textContent = fmt(s.rul_avg, 0);
    $("kpi-high").textContent = s.by_risk.high ?? 0;
    $("kpi-medium").textContent = s.by_risk.medium ?? 0;
    $("kpi-alerts").textContent = s.open_alerts;
    $("as-of").textContent = s.as_of ? `data as of ${ago(s.as_of)}` : "no data yet";
    rulHist.set(s.rul_histogram);
    riskHist.set(s.risk_histogram.map((b) => ({ ...b, lo: b.lo * 100, hi: b.hi * 100 })));
    showError(null);
  } catch (e) {
    showError(e);
  }
}

function onMessage(msg) {
  if (msg.type === "predictions") {
    for (const p of msg.data) {
      const old = fleet.get(p.battery_id) || { battery_id: p.battery_id, open_alerts: 0 };
      fleet.set(p.battery_id, { ...old, ...p, open_alerts: old.open_alerts });
      touched.add(p.battery_id);
    }
    updates += msg.data.length;
    const el = $("live-updates");
    el.textContent = updates;
    el.dataset.count = updates;
    dirty = true;
  } else if (msg.type === "alert") {
    const a = msg.data, b = fleet.get(a.battery_id);
    if (b) {
      b.open_alerts = Math.max(0, (b.open_alerts || 0) + (a.status === "RESOLVED" ? -1 : 1));
      touched.add(a.battery_id);
      dirty = true;
    }
  }
}

async function main() {
  scatter = scatterChart($("chart-scatter"), RISKS.map((r) => ({ label: r === "unknown" ? "no prediction" : `${r} risk`, color: RISK_COLORS[r] })), {
    xLabel: "age (equivalent full cycles)", yLabel: "SoH %",
    onClick: (p) => { window.location.href = `battery.html?id=${encodeURIComponent(p.id)}`; },
  });
  rulHist = histogramChart($("chart-rul"), { xLabel: "RUL P50 (cycles)" });
  riskHist = histogramChart($("chart-risk"), { xLabel: "failure probability (%)", color: "#e3a72f" });
  for (const id of ["f-risk", "f-alert", "f-soh", "f-q"]) $(id).addEventListener("input", () => { dirty = true; render(); });
  document.querySelectorAll("#fleet-table th").forEach((th) => th.addEventListener("click", () => {
    if (sortKey === th.dataset.k) sortAsc = !sortAsc; else { sortKey = th.dataset.k; sortAsc = th.dataset.k === "battery_id"; }
    dirty = true; render();
  }));
  $("fleet-table").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-battery]");
    if (tr && ev.target.tagName !== "A") window.location.href = `battery.html?id=${encodeURIComponent(tr.dataset.battery)}`;
  });
  follow("/ws/fleet", onMessage, liveIndicator($("live")));
  try {
    await Promise.all([loadFleet(), loadSummary()]);
  } catch (e) {
    showError(e);
  }
  render();
  document.body.dataset.ready = "1";
  setInterval(render, 2000);
  setInterval(loadSummary, SUMMARY_EVERY_MS);
}

main();
