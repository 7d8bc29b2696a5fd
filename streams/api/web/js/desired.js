// The desired-state form: PUT /api/batteries/{id}/desired with an API key, then desired vs
// reported (DesiredStateView) until the simulator reports the same version (converged).
import { getJSON, putJSON, esc, fmtTime } from "./api.js";

const FIELDS = ["usage_profile", "climate", "max_soc", "dc_share", "fault"];
const NUMERIC = new Set(["max_soc", "dc_share"]);
const KEY_STORE = "evtwin.apiKey";

export class DesiredForm {
  constructor(form, batteryId, { msg, table, status }) {
    this.form = form;
    this.id = batteryId;
    this.msg = msg;
    this.table = table;
    this.status = status;
    this.view = null;
    this.poll = null;
    const key = form.elements.api_key;
    key.value = sessionStorage.getItem(KEY_STORE) || "";
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.submit(); });
  }

  body() {
    const out = {};
    for (const f of FIELDS) {
      const v = this.form.elements[f].value;
      out[f] = v === "" ? null : NUMERIC.has(f) ? Number(v) : v;
    }
    return out;
  }

  say(text, kind) {
    this.msg.className = `msg ${kind || ""}`;
    this.msg.textContent = text;
  }

  async submit() {
    const apiKey = this.form.elements.api_key.value.trim();
    sessionStorage.setItem(KEY_STORE, apiKey);
    this.say("sending…");
    try {
      const view = await putJSON(`/api/batteries/${encodeURIComponent(this.id)}/desired`, this.body(), apiKey);
      this.say(`accepted: desired version ${view.desired_version}; waiting for the pack to report it…`, "ok");
      this.show(view);
    } catch (e) {
      const why = e.status === 401 ? "an API key is needed (or this one is wrong)"
        : e.status === 429 ? `too many requests; retry in ${e.retryAfter || "a few"} s`
        : e.status === 422 && Array.isArray(e.detail) ? e.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ")
        : e.message;
      this.say(`refused (${e.status || "error"}): ${why}`, "err");
    }
  }

  /** Show a DesiredStateView; poll it until reported and desired converge. */
  show(view) {
    if (!view) return;
    if (this.view && view.desired_version !== null && this.view.desired_version !== null && view.desired_version < this.view.desired_version) return;
    this.view = view;
    const cells = (s) => FIELDS.map((f) => `<td>${s && s[f] !== null && s[f] !== undefined ? esc(s[f]) : "—"}</td>`).join("");
    this.table.querySelector("tbody").innerHTML = `
      <tr data-row="desired"><th>desired</th>${cells(view.desired)}<td>${view.desired_version ?? "—"}</td><td>${view.requested_at ? fmtTime(view.requested_at, true) : "—"}</td></tr>
      <tr data-row="reported"><th>reported</th>${cells(view.reported)}<td>${view.reported_version ?? "—"}</td><td>${view.reported_at ? fmtTime(view.reported_at, true) : "—"}</td></tr>`;
    const configured = view.desired_version !== null && view.desired_version !== undefined;
    this.status.innerHTML = !configured ? `<span class="muted">never configured: the pack runs as simulated</span>`
      : view.converged ? `<span class="converged" id="converged">converged</span> at ${fmtTime(view.converged_at, true)}`
      : `<span class="pending">pending</span>: the pack has not reported version ${view.desired_version} yet`;
    this.status.dataset.converged = view.converged ? "1" : "0";
    if (configured && !view.converged && !this.poll) {
      this.poll = setInterval(async () => {
        try { this.show(await getJSON(`/api/batteries/${encodeURIComponent(this.id)}/desired`)); } catch { /* next round */ }
      }, 2000);
    } else if ((view.converged || !configured) && this.poll) {
      clearInterval(this.poll);
      this.poll = null;
    }
    if (configured) {
      for (const f of FIELDS) {
        const el = this.form.elements[f];
        if (document.activeElement !== el && view.desired && view.desired[f] !== null && view.desired[f] !== undefined && el.value === "") el.value = view.desired[f];
      }
    }
  }
}
