// The RUL gauge: a half-ring from 0 to `max` cycles, the P10–P90 band as a wide arc, the P50 needle.

/** Draw the gauge on a canvas. Values in equivalent full cycles; null values draw an empty gauge. */
export function drawRulGauge(canvas, { p10, p50, p90, max }) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 260, h = canvas.clientHeight || 160;
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const cx = w / 2, cy = h - 24, r = Math.min(w / 2 - 48, h - 48);
  const top = Math.max(max || 0, p90 || 0, p50 || 0, 100);
  const ang = (v) => Math.PI + Math.PI * Math.min(Math.max(v / top, 0), 1);
  const arc = (a0, a1, color, width) => { g.beginPath(); g.arc(cx, cy, r, a0, a1); g.strokeStyle = color; g.lineWidth = width; g.lineCap = "butt"; g.stroke(); };

  arc(Math.PI, 2 * Math.PI, "#1d2633", 18);
  // low-RUL zone (the low_rul alert opens below 100 cycles)
  arc(Math.PI, ang(100), "rgba(224,71,76,.45)", 18);
  if (p10 !== null && p10 !== undefined && p90 !== null && p90 !== undefined) arc(ang(p10), ang(p90), "rgba(78,163,255,.75)", 18);
  g.fillStyle = "#8d9bb0";
  g.font = "11px sans-serif";
  g.textAlign = "center";
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4, a = ang(v);
    g.textAlign = i === 0 ? "right" : i === 4 ? "left" : "center";
    g.fillText(Math.round(v), cx + (r + 14) * Math.cos(a), cy + (r + 14) * Math.sin(a) + (i === 0 || i === 4 ? 4 : 0));
  }
  g.textAlign = "center";
  if (p50 === null || p50 === undefined) {
    g.fillStyle = "#8d9bb0";
    g.font = "14px sans-serif";
    g.fillText("no prediction", cx, cy - 10);
    return;
  }
  const a = ang(p50);
  g.beginPath();
  g.moveTo(cx, cy);
  g.lineTo(cx + (r + 4) * Math.cos(a), cy + (r + 4) * Math.sin(a));
  g.strokeStyle = "#e3e9f1";
  g.lineWidth = 3;
  g.stroke();
  g.beginPath();
  g.arc(cx, cy, 5, 0, 2 * Math.PI);
  g.fillStyle = "#e3e9f1";
  g.fill();
  g.font = "bold 22px sans-serif";
  g.fillText(`${Math.round(p50)}`, cx, cy - r / 2.6);
  g.font = "11px sans-serif";
  g.fillStyle = "#8d9bb0";
  g.fillText("cycles left (P50)", cx, cy - r / 2.6 + 16);
}
