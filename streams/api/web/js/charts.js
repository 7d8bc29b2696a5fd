// Chart.js (vendored UMD build, global `Chart`) with the page's dark theme, and a few chart kinds.
const Chart = window.Chart;

Chart.defaults.color = "#8d9bb0";
Chart.defaults.borderColor = "#2a3546";
Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.plugins.legend.labels.boxWidth = 12;

const pad2 = (n) => String(n).padStart(2, "0");

/** Tick label of a time axis (ms since the epoch), UTC; dates when the span is over a day. */
function timeTick(spanMs) {
  return (v) => {
    const d = new Date(v);
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    if (spanMs > 2 * 86400e3) return `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
    if (spanMs > 86400e3) return `${pad2(d.getUTCDate())} ${hm}`;
    return spanMs < 600e3 ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
  };
}

/** A time-series line chart. series: [{label, color, axis?:"y"|"y2", unit}]. */
export function timeChart(canvas, series, { y2Label, yLabel, yMin, yMax } = {}) {
  const scales = {
    x: { type: "linear", ticks: { maxTicksLimit: 7, callback: timeTick(3600e3) }, grid: { display: false } },
    y: { title: { display: !!yLabel, text: yLabel }, min: yMin, max: yMax },
  };
  if (series.some((s) => s.axis === "y2")) {
    scales.y2 = { position: "right", title: { display: !!y2Label, text: y2Label }, grid: { drawOnChartArea: false } };
  }
  const chart = new Chart(canvas, {
    type: "line",
    data: {
      datasets: series.map((s) => ({
        label: s.label, data: [], borderColor: s.color, backgroundColor: s.fill || s.color,
        yAxisID: s.axis || "y", pointRadius: 0, borderWidth: 1.6, tension: 0.2, fill: s.fillTo ?? false,
        spanGaps: true,
      })),
    },
    options: {
      parsing: false, normalized: true,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      plugins: {
        legend: { display: series.length > 1 },
        tooltip: { callbacks: { title: (items) => items.length ? new Date(items[0].parsed.x).toISOString().replace("T", " ").slice(0, 19) + "Z" : "" } },
      },
      scales,
    },
  });
  return {
    chart,
    /** Replace the data: rows of objects with `t` (ms) and one key per series (`keys[i]`). */
    set(rows, keys) {
      keys.forEach((k, i) => { chart.data.datasets[i].data = rows.filter((r) => r[k] !== null && r[k] !== undefined).map((r) => ({ x: r.t, y: r[k] })); });
      this.retick();
      chart.update("none");
    },
    /** Append one row; keep at most `max` points per series; redraw unless told not to. */
    push(row, keys, max = 5000, draw = true) {
      keys.forEach((k, i) => {
        if (row[k] === null || row[k] === undefined) return;
        const d = chart.data.datasets[i].data;
        if (d.length && d[d.length - 1].x >= row.t) return;  // out of order or already there
        d.push({ x: row.t, y: row[k] });
        if (d.length > max) d.shift();
      });
      if (draw) this.redraw();
    },
    redraw() {
      this.retick();
      chart.update("none");
    },
    retick() {
      let lo = Infinity, hi = -Infinity;
      for (const ds of chart.data.datasets) if (ds.data.length) { lo = Math.min(lo, ds.data[0].x); hi = Math.max(hi, ds.data[ds.data.length - 1].x); }
      chart.options.scales.x.ticks.callback = timeTick(hi > lo ? hi - lo : 3600e3);
    },
    points() { return chart.data.datasets.reduce((n, ds) => n + ds.data.length, 0); },
  };
}

/** A scatter chart, one dataset per group (e.g. risk band), with click → onClick(point.raw). */
export function scatterChart(canvas, groups, { xLabel, yLabel, onClick } = {}) {
  const chart = new Chart(canvas, {
    type: "scatter",
    data: { datasets: groups.map((g) => ({ label: g.label, data: [], backgroundColor: g.color, pointRadius: 3, pointHoverRadius: 6 })) },
    options: {
      parsing: false,
      scales: { x: { title: { display: true, text: xLabel } }, y: { title: { display: true, text: yLabel } } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.raw.id}: ${c.raw.x}, ${c.raw.y.toFixed(1)}` } } },
      onClick: (ev, els) => { if (onClick && els.length) onClick(chart.data.datasets[els[0].datasetIndex].data[els[0].index]); },
    },
  });
  return {
    chart,
    set(byGroup) { chart.data.datasets.forEach((ds, i) => { ds.data = byGroup[i] || []; }); chart.update("none"); },
  };
}

/** A histogram from bins [{lo, hi, count}]. */
export function histogramChart(canvas, { xLabel, color = "#4ea3ff" } = {}) {
  const chart = new Chart(canvas, {
    type: "bar",
    data: { labels: [], datasets: [{ label: "packs", data: [], backgroundColor: color, barPercentage: 1, categoryPercentage: 0.95 }] },
    options: {
      plugins: { legend: { display: false } },
      scales: { x: { title: { display: true, text: xLabel }, grid: { display: false } }, y: { title: { display: true, text: "packs" }, beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
  return {
    chart,
    set(bins) {
      chart.data.labels = bins.map((b) => `${Math.round(b.lo)}–${Math.round(b.hi)}`);
      chart.data.datasets[0].data = bins.map((b) => b.count);
      chart.update("none");
    },
  };
}
