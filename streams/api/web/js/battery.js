// Battery page: the twin of one pack (GET /api/batteries/{id}), its history as charts, its alert
// episodes, the 3D pack, all kept live by /ws/batteries/{id}; the desired-state form (PUT …/desired).
import { getJSON, follow, liveIndicator, fmt, fmtTime, ago, riskBadge, esc, showError, RISK_COLORS } from "./api.js";
import { timeChart } from "./charts.js";
import { drawRulGauge } from "./gauge.js";
import { renderTimeline, renderAlertList } from "./alerts.js";
import { PackView, RAMP_CSS } from "./pack3d.js";
import { DesiredForm } from "./desired.js";

const $ = (id) => document.getElementById(id);
const id = new URLSearchParams(window.location.search).get("id");
const base = `/api/batteries/${encodeURIComponent(id || "")}`;

let charts = {}, pack, desired, alerts = [], rulMax = 0, updates = 0, openAlerts = 0;
const latest = { reported: null, prediction: null };

const CHARTS = {
  soc: { series: [{ label: "SoC %", color: "#4ea3ff" }], keys: ["soc"], opts: { yMin: 0, yMax: 100 } },
  soh: { series: [{ label: "SoH %", color: "#2fa56a" }], keys: ["soh"] },
  temperature: { series: [{ label: "temperature °C", color: "#e3a72f" }, { label: "bucket max °C", color: "#e0474c" }], keys: ["temperature", "temperature_max"] },
  vi: { series: [{ label: "voltage V", color: "#b48cff" }, { label: "current A (> 0 discharge)", color: "#4ecdc4", axis: "y2" }], keys: ["voltage", "current"], opts: { yLabel: "V", y2Label: "A" } },
  rul: {
    series: [{ label: "P10", color: "rgba(78,163,255,.5)" }, { label: "P90", color: "rgba(78,163,255,.5)", fill: "rgba(78,163,255,.18)", fillTo: "-1" }, { label: "P50", color: "#e3e9f1" }],
    keys: ["rul_p10", "rul_p90", "rul_cycles"],
  },
};

const row = (p) => ({ ...p, t: Date.parse(p.time) });

function showNow() {
  const r = latest.reported || {}, p = latest.prediction || {};
  $("now-soc").textContent = fmt(r.soc, 1, " %");
  $("now-soh").textContent = fmt(r.soh, 2, " %");
  $("now-voltage").textContent = fmt(r.voltage, 1, " V");
  $("now-current").textContent = fmt(r.current, 1, " A");
  $("now-temperature").textContent = fmt(r.temperature, 1, " °C");
  $("now-power").textContent = fmt(r.power_consumption, 1, " kW");
  $("now-cycles").textContent = r.charge_cycles ?? "–";
  $("now-alerts").textContent = openAlerts;
  $("last-reading").textContent = r.time ? `last reading ${fmtTime(r.time, true)} (${ago(r.time)})` : "no reading yet";
  $("risk-badge").innerHTML = riskBadge(p.risk);
  $("failure-p").textContent = p.failure_probability === null || p.failure_probability === undefined ? "–" : `${(p.failure_probability * 100).toFixed(1)} %`;
  const meter = $("failure-meter");
  meter.style.width = `${Math.round((p.failure_probability || 0) * 100)}%`;
  meter.style.background = RISK_COLORS[p.risk || "unknown"];
  $("anomaly").textContent = fmt(p.anomaly_score, 2);
  $("fault-score").textContent = fmt(p.fault_score, 2);
  const flag = $("fault-flag");
  flag.className = p.fault_flag ? "badge risk-high" : p.fault_flag === false ? "badge risk-low" : "";
  flag.textContent = p.fault_flag ? "fault flagged" : p.fault_flag === false ? "no fault" : "";
  $("model-version").textContent = p.model_version || "–";
  $("rul-p50").textContent = fmt(p.rul_cycles, 0);
  $("rul-band").textContent = p.rul_p10 === null || p.rul_p10 === undefined ? "–" : `${fmt(p.rul_p10, 0)}–${fmt(p.rul_p90, 0)}`;
  rulMax = Math.max(rulMax, p.rul_p90 || 0);
  drawRulGauge($("rul-gauge"), { p10: p.rul_p10, p50: p.rul_cycles, p90: p.rul_p90, max: Math.ceil(rulMax * 1.15 / 100) * 100 });
}

function showPackLegend() {
  const [lo, hi] = pack.legend();
  $("pack-lo").textContent = lo;
  $("pack-hi").textContent = hi;
  const c = (latest.reported || {}).current;
  $("pack-flow").textContent = c === null || c === undefined ? "" : c > 1 ? `discharging ${c.toFixed(0)} A` : c < -1 ? `charging ${(-c).toFixed(0)} A` : "at rest";
}

async function loadHistory() {
  const span = Number($("range").value) * 1000;
  const last = latest.reported ? Date.parse(latest.reported.time) : Date.now();
  // end at now, or at the last reading when that is older than the range (a pack gone quiet)
  const to = last < Date.now() - span ? last + 1000 : Date.now() + 5000;
  const from = to - span;
  const h = await getJSON(`${base}/history`, { from: new Date(from).toISOString(), to: new Date(to).toISOString(), resolution: "auto" });
  const rows = h.points.map(row);
  for (const [k, c] of Object.entries(CHARTS)) charts[k].set(rows, c.keys);
  $("history-note").textContent = `${rows.length} points · resolution ${h.resolution} · from ${h.source}`;
  document.body.dataset.historyPoints = rows.length;
  return [from, to];
}

async function loadAlerts(range) {
  const page = await getJSON(`${base}/alerts`, { limit: 200 });
  alerts = page.items;
  openAlerts = alerts.filter((a) => !a.resolved_at && a.status !== "RESOLVED").length;
  renderTimeline($("alert-timeline"), alerts, range);
  renderAlertList($("alert-list"), alerts);
}

let pending = [], flushTimer = null;

function flushLive() {
  flushTimer = null;
  for (const r of pending) for (const [k, c] of Object.entries(CHARTS)) charts[k].push(r, c.keys, 5000, false);
  pending = [];
  for (const c of Object.values(charts)) c.redraw();
  showNow();
  showPackLegend();
}

function onMessage(msg) {
  if (msg.type === "predictions") {
    for (const p of msg.data) {
      if (p.battery_id !== id) continue;
      latest.reported = { ...latest.reported, ...p };
      latest.prediction = { ...latest.prediction, ...p };
      pending.push(row(p));
      pack.update(p);
      updates++;
    }
    const el = $("live-updates");
    el.textContent = updates;
    el.dataset.count = updates;
    if (!flushTimer) flushTimer = setTimeout(flushLive, 1000);  // charts and numbers redraw once a second
  } else if (msg.type === "alert" && msg.data.battery_id === id) {
    const i = alerts.findIndex((a) => a.alert_id === msg.data.alert_id);
    if (i >= 0) alerts[i] = msg.data; else alerts.unshift(msg.data);
    openAlerts = alerts.filter((a) => !a.resolved_at && a.status !== "RESOLVED").length;
    const span = Number($("range").value) * 1000;
    renderTimeline($("alert-timeline"), alerts, [Date.now() - span, Date.now()]);
    renderAlertList($("alert-list"), alerts);
    showNow();
  } else if (msg.type === "reported" && msg.data.battery_id === id) {
    desired.show(msg.data);
  }
}

async function main() {
  if (!id) { showError("no battery: open this page from the fleet page (battery.html?id=…)"); return; }
  $("battery-id").textContent = id;
  document.title = `${id} — EV Battery Digital Twin`;
  for (const [k, c] of Object.entries(CHARTS)) charts[k] = timeChart($(`chart-${k}`), c.series, c.opts || {});
  $("pack-ramp").style.background = RAMP_CSS;
  pack = new PackView($("pack3d"), id);
  window.evtwinPack = pack;  // for the browser tests and the curious
  document.querySelectorAll("input[name=pack-mode]").forEach((r) => r.addEventListener("change", () => { pack.setMode(r.value); showPackLegend(); }));
  desired = new DesiredForm($("desired-form"), id, { msg: $("desired-msg"), table: $("desired-table"), status: $("desired-status") });

  let twin;
  try {
    twin = await getJSON(base);
  } catch (e) {
    showError(e.status === 404 ? `unknown battery ${id}` : e);
    return;
  }
  latest.reported = twin.reported;
  latest.prediction = twin.prediction;
  openAlerts = twin.open_alerts.length;
  if (twin.reported) pack.update({ ...twin.reported, anomaly_score: twin.prediction && twin.prediction.anomaly_score });
  desired.show(twin.desired);
  showNow();
  showPackLegend();
  follow(`/ws/batteries/${encodeURIComponent(id)}`, onMessage, liveIndicator($("live")));
  const reload = async () => {
    try {
      const range = await loadHistory();
      await loadAlerts(range);
      showNow();
      showError(null);
    } catch (e) {
      showError(e);
    }
  };
  $("range").addEventListener("change", reload);
  await reload();
  document.body.dataset.ready = "1";
}

main();
