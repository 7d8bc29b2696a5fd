// A battery's alert episodes: a timeline (one lane per rule, a bar from opened to resolved or now)
// and a list, newest first.
import { esc, fmtTime } from "./api.js";

const SEV = { CRITICAL: "#e0474c", WARNING: "#e3a72f", INFO: "#4ea3ff" };

/** Draw episodes into an <svg> over the time range [from, to] (ms). */
export function renderTimeline(svg, alerts, [from, to]) {
  const width = svg.clientWidth || 500, lane = 22, left = 110, top = 8;
  const rules = [...new Set(alerts.map((a) => a.rule))].sort();
  const height = Math.max(60, top + rules.length * lane + 22);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const x = (t) => left + ((t - from) / (to - from)) * (width - left - 10);
  const parts = [];
  if (!rules.length) {
    svg.setAttribute("height", 40);
    svg.setAttribute("viewBox", `0 0 ${width} 40`);
    svg.innerHTML = `<text x="${width / 2}" y="24" fill="#8d9bb0" font-size="13" text-anchor="middle">no alert episodes</text>`;
    return;
  }
  rules.forEach((rule, i) => {
    const y = top + i * lane;
    parts.push(`<text x="4" y="${y + 14}" fill="#8d9bb0" font-size="12">${esc(rule)}</text>`);
    parts.push(`<line x1="${left}" x2="${width - 10}" y1="${y + 10}" y2="${y + 10}" stroke="#2a3546"/>`);
    for (const a of alerts.filter((e) => e.rule === rule)) {
      const t0 = Date.parse(a.opened_at), t1 = a.resolved_at ? Date.parse(a.resolved_at) : Date.now();
      if (t1 < from || t0 > to) continue;
      const x0 = x(Math.max(t0, from)), x1 = Math.max(x(Math.min(t1, to)), x0 + 3);
      const open = !a.resolved_at;
      parts.push(`<rect class="episode" data-alert="${esc(a.alert_id)}" x="${x0}" y="${y + 3}" width="${x1 - x0}" height="14" rx="3"
        fill="${SEV[a.severity] || "#8d9bb0"}" fill-opacity="${open ? 1 : 0.55}"><title>${esc(a.rule)} ${esc(a.severity)}: ${esc(a.message || "")}
opened ${fmtTime(a.opened_at, true)}${a.resolved_at ? "\nresolved " + fmtTime(a.resolved_at, true) : " (open)"}</title></rect>`);
    }
  });
  const axisY = top + rules.length * lane + 14;
  for (let k = 0; k <= 4; k++) {
    const t = from + ((to - from) * k) / 4;
    parts.push(`<text x="${x(t)}" y="${axisY}" fill="#8d9bb0" font-size="10" text-anchor="${k === 0 ? "start" : k === 4 ? "end" : "middle"}">${fmtTime(new Date(t).toISOString(), to - from > 86400e3).slice(to - from > 86400e3 ? 5 : 0, to - from > 86400e3 ? 16 : 5)}</text>`);
  }
  svg.innerHTML = parts.join("");
}

/** The episodes as lines: severity, rule, message, opened/resolved. */
export function renderAlertList(el, alerts) {
  el.innerHTML = alerts.slice(0, 50).map((a) => `
    <div data-alert="${esc(a.alert_id)}"><span class="badge sev-${esc(a.severity)}">${esc(a.severity)}</span>
      <b>${esc(a.rule)}</b> ${esc(a.message || "")}
      <span class="muted">· opened ${fmtTime(a.opened_at, true)}${a.resolved_at ? " · resolved " + fmtTime(a.resolved_at, true) : " · <b>open</b>"}</span></div>`).join("")
    || `<div class="muted">none</div>`;
}
