// Topics page: topics, partitions, end offsets and consumer-group lag (GET /api/topics), and the
// last records of a topic decoded to JSON (GET /api/topics/{name}/records).
import { getJSON, esc, fmtTime, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
let overview = null, current = new URLSearchParams(window.location.search).get("topic");

function renderOverview() {
  $("topics-table").querySelector("tbody").innerHTML = overview.topics.map((t) => `
    <tr data-topic="${esc(t.name)}" class="${t.name === current ? "selected" : ""}">
      <td><a href="?topic=${encodeURIComponent(t.name)}">${esc(t.name)}</a></td><td class="muted">${esc(t.schema_name || "")}</td>
      <td>${t.partitions.length}</td><td>${t.messages.toLocaleString()}</td>
      <td>${t.partitions.reduce((n, p) => n + p.high, 0).toLocaleString()}</td></tr>`).join("")
    || `<tr><td colspan="5" class="empty">no topics</td></tr>`;
  $("groups-table").querySelector("tbody").innerHTML = overview.groups.map((g) => {
    const lagging = Object.entries(g.partitions).filter(([, l]) => l > 0);
    return `<tr data-group="${esc(g.group)}"><td>${esc(g.group)}</td><td>${esc(g.topic)}</td>
      <td class="${g.lag > 0 ? "lag-pos" : ""}">${g.lag.toLocaleString()}</td>
      <td class="muted wrap">${lagging.length ? lagging.map(([p, l]) => `${p}:${l}`).join(" ") : "none"}</td></tr>`;
  }).join("") || `<tr><td colspan="4" class="empty">no consumer groups</td></tr>`;
  const t = overview.topics.find((x) => x.name === current);
  if (!t) return;
  $("partitions-table").querySelector("tbody").innerHTML = t.partitions.map((p) =>
    `<tr><td>${p.partition}</td><td>${p.low}</td><td>${p.high}</td><td>${p.high - p.low}</td></tr>`).join("");
  const sel = $("partition"), keep = sel.value;
  if (sel.options.length !== t.partitions.length + 1) {
    sel.innerHTML = `<option value="">all</option>` + t.partitions.map((p) => `<option>${p.partition}</option>`).join("");
    sel.value = keep;
  }
}

async function loadRecords() {
  if (!current) return;
  $("topic-title").textContent = current;
  const r = await getJSON(`/api/topics/${encodeURIComponent(current)}/records`, { limit: $("limit").value, partition: $("partition").value });
  $("records").innerHTML = r.records.map((rec) => `
    <div class="small muted">partition ${rec.partition} · offset ${rec.offset} · key ${esc(rec.key ?? "null")} · ${rec.timestamp ? fmtTime(rec.timestamp, true) : ""}</div>
    <pre class="json" data-offset="${rec.offset}">${esc(JSON.stringify(rec.value, null, 2))}</pre>`).join("")
    || `<div class="empty">no records</div>`;
}

async function refresh() {
  try {
    overview = await getJSON("/api/topics");
    renderOverview();
    await loadRecords();
    $("refreshed").textContent = `updated ${fmtTime(new Date().toISOString())}`;
    showError(null);
  } catch (e) {
    showError(e);
  }
  document.body.dataset.ready = "1";
}

$("topics-table").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-topic]");
  if (!tr) return;
  ev.preventDefault();
  current = tr.dataset.topic;
  history.replaceState(null, "", `?topic=${encodeURIComponent(current)}`);
  $("partition").innerHTML = `<option value="">all</option>`;
  refresh();
});
$("partition").addEventListener("change", loadRecords);
$("limit").addEventListener("change", loadRecords);
setInterval(() => { if ($("auto").checked) refresh(); }, 5000);
refresh();
