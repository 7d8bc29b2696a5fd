// The 3D pack (three.js): 96 series groups as prismatic cells in 8 modules of 12, coloured by
// group voltage or temperature, with a charge level in each cell and a pulse that runs along the
// series chain — towards the terminals when discharging, back when charging, faster with more current.
//
// The stream carries pack-level values (pack voltage, highest temperature, SoC, current, anomaly
// score), not one value per group: the page models the groups from them — mean group voltage =
// pack voltage / 96 with a per-pack pattern whose spread grows with the anomaly score, and the
// hottest group at the reported temperature, cooler towards the pack's edges. `update()` takes
// the BMS's lowest and highest group voltage (`cell_voltage_min`/`_max`, as telemetry carries
// them) when a message has them, and exact per-group arrays (`cell_voltages`,
// `cell_temperatures`) when a source has those.
import * as THREE from "three";
import { OrbitControls } from "../vendor/three/OrbitControls.js";

export const N_SERIES = 96;
const MODULES = 8, PER_MODULE = 12;
const CELL = { w: 0.26, h: 1.0, d: 0.9, gap: 0.06 };

/** A seeded pseudo-random sequence (mulberry32) so a pack's pattern is the same on every load. */
function seeded(text) {
  let h = 2166136261;
  for (const c of text) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return () => {
    h = (h + 0x6d2b79f5) | 0;
    let t = Math.imul(h ^ (h >>> 15), 1 | h);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Blue → cyan → green → yellow → red for t in [0, 1]. */
function ramp(t, out) {
  const stops = [[0.15, 0.3, 0.9], [0.1, 0.75, 0.9], [0.2, 0.8, 0.35], [0.95, 0.8, 0.15], [0.9, 0.2, 0.2]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const a = stops[i], b = stops[i + 1];
  return out.setRGB(a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f);
}
export const RAMP_CSS = "linear-gradient(90deg, rgb(38,77,230), rgb(26,191,230), rgb(51,204,89), rgb(242,204,38), rgb(230,51,51))";

/** Where group i sits: modules in two columns of four, cells in a row along x. */
function cellPosition(i) {
  const m = Math.floor(i / PER_MODULE), k = i % PER_MODULE;
  const col = m % 2, row = Math.floor(m / 2);
  const moduleLen = PER_MODULE * (CELL.w + CELL.gap);
  const x = (col - 0.5) * (moduleLen + 0.5) + (k - (PER_MODULE - 1) / 2) * (CELL.w + CELL.gap);
  const z = (row - (MODULES / 2 - 1) / 2) * (CELL.d + 0.35);
  return new THREE.Vector3(x, CELL.h / 2 + 0.08, z);
}

export class PackView {
  /** @param {HTMLElement} host element the canvas fills; @param {string} batteryId seeds the pattern */
  constructor(host, batteryId) {
    this.host = host;
    this.mode = "voltage";
    this.state = null;
    this.values = { voltage: new Float32Array(N_SERIES), temperature: new Float32Array(N_SERIES) };
    this.range = { voltage: [3.5, 3.9], temperature: [15, 60] };
    this.level = 0.5;         // shown charge level (0-1), eased towards the SoC
    this.flow = 0;            // signed current share: > 0 discharge
    this.phase = 0;
    const rnd = seeded(batteryId || "pack");
    this.pattern = Float32Array.from({ length: N_SERIES }, () => (rnd() + rnd() + rnd() - 1.5) / 1.5);
    this.pattern[Math.floor(rnd() * N_SERIES)] = -1.8;  // the weakest group sags most
    this.heat = Float32Array.from({ length: N_SERIES }, (_, i) => {
      const p = cellPosition(i);
      return Math.exp(-(p.x * p.x) / 6 - (p.z * p.z) / 4) * (0.85 + 0.3 * rnd());
    });
    const hmax = Math.max(...this.heat);
    this.heat = this.heat.map((h) => h / hmax);
    this._build();
  }

  _build() {
    const w = this.host.clientWidth || 640, h = this.host.clientHeight || 420;
    this.renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 1.5));
    this.renderer.setSize(w, h);
    this.renderer.setClearColor(0x0b0f14);
    this.canvas = this.renderer.domElement;
    this.canvas.id = "pack3d-canvas";
    this.host.prepend(this.canvas);

    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(40, w / h, 0.1, 100);
    this.camera.position.set(4.0, 5.0, 6.0);
    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.target.set(0, 0.3, 0);
    this.controls.enableDamping = true;
    this.controls.update();

    this.scene.add(new THREE.HemisphereLight(0xdde8ff, 0x202630, 1.6));
    const sun = new THREE.DirectionalLight(0xffffff, 1.6);
    sun.position.set(4, 8, 5);
    this.scene.add(sun);

    const trayW = 2 * PER_MODULE * (CELL.w + CELL.gap) + 1.2, trayD = (MODULES / 2) * (CELL.d + 0.35) + 0.5;
    const tray = new THREE.Mesh(new THREE.BoxGeometry(trayW, 0.16, trayD),
      new THREE.MeshLambertMaterial({ color: 0x2a3340 }));
    this.scene.add(tray);
    const edges = new THREE.LineSegments(new THREE.EdgesGeometry(new THREE.BoxGeometry(trayW, 1.3, trayD)),
      new THREE.LineBasicMaterial({ color: 0x3d4a5c }));
    edges.position.y = 0.65;
    this.scene.add(edges);

    const box = new THREE.BoxGeometry(CELL.w, CELL.h, CELL.d);
    this.cells = new THREE.InstancedMesh(box, new THREE.MeshLambertMaterial(), N_SERIES);
    // the charge level: a bright bar on each cell's front face, its height the SoC
    const bar = new THREE.BoxGeometry(CELL.w * 0.6, 1, 0.04);
    bar.translate(0, 0.5, 0);
    this.bars = new THREE.InstancedMesh(bar, new THREE.MeshBasicMaterial({ color: 0xffffff, transparent: true, opacity: 0.85 }), N_SERIES);
    const m = new THREE.Matrix4();
    const c = new THREE.Color(0x888888);
    for (let i = 0; i < N_SERIES; i++) {
      m.makeTranslation(cellPosition(i));
      this.cells.setMatrixAt(i, m);
      this.cells.setColorAt(i, c);
    }
    this.scene.add(this.cells, this.bars);
    this._placeBars();

    // terminals: + at the first group, - at the last
    const term = (i, color) => {
      const t = new THREE.Mesh(new THREE.CylinderGeometry(0.09, 0.09, 0.3, 16), new THREE.MeshLambertMaterial({ color }));
      t.position.copy(cellPosition(i)).add(new THREE.Vector3(0, CELL.h / 2 + 0.15, 0));
      this.scene.add(t);
    };
    term(0, 0xd64541);
    term(N_SERIES - 1, 0x333a44);

    this.resizeObserver = new ResizeObserver(() => this._resize());
    this.resizeObserver.observe(this.host);
    this.frames = 0;
    this._last = 0;
    // Draw at ~12 frames/s while something moves (current flows, the level eases, the user turns
    // the pack), else twice a second: software WebGL on a laptop without a GPU stays cheap.
    this.controls.addEventListener("change", () => { this._moved = performance.now(); });
    const loop = (t) => {
      this._raf = requestAnimationFrame(loop);
      const busy = Math.abs(this.flow) > 0.01 || this._easing || t - (this._moved || 0) < 1000;
      if (t - this._last < (busy ? 80 : 500)) return;
      const dt = Math.min((t - this._last) / 1000, 0.1);
      this._last = t;
      this._animate(dt);
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
      this.frames++;
    };
    this._raf = requestAnimationFrame(loop);
  }

  _resize() {
    const w = this.host.clientWidth, h = this.host.clientHeight;
    if (!w || !h) return;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
  }

  _placeBars() {
    const m = new THREE.Matrix4(), s = new THREE.Matrix4();
    const hgt = Math.max(this.level, 0.01) * (CELL.h - 0.1);
    for (let i = 0; i < N_SERIES; i++) {
      const p = cellPosition(i);
      m.makeTranslation(p.x, p.y - CELL.h / 2 + 0.05, p.z + CELL.d / 2 + 0.021);
      s.makeScale(1, hgt, 1);
      this.bars.setMatrixAt(i, m.multiply(s));
    }
    this.bars.instanceMatrix.needsUpdate = true;
  }

  _animate(dt) {
    const target = this.state && this.state.soc !== null && this.state.soc !== undefined ? this.state.soc / 100 : this.level;
    this._easing = Math.abs(target - this.level) > 0.001;
    if (this._easing) {
      this.level += (target - this.level) * Math.min(1, dt * 3);
      this._placeBars();
    }
    // the pulse: a wave travelling along the series chain (+ to -) at a speed set by the current
    this.phase += dt * this.flow * 24;
    const vals = this.values[this.mode], [lo, hi] = this.range[this.mode];
    const c = new THREE.Color();
    for (let i = 0; i < N_SERIES; i++) {
      ramp((vals[i] - lo) / (hi - lo || 1), c);
      const wave = Math.abs(this.flow) > 0.01 ? Math.max(0, Math.cos((i - this.phase) * 0.35)) ** 8 : 0;
      c.offsetHSL(0, 0, 0.28 * wave);
      this.cells.setColorAt(i, c);
    }
    this.cells.instanceColor.needsUpdate = true;
  }

  /** Feed a reading (LivePrediction or a history point): soc %, voltage V, current A, temperature °C. */
  update(s) {
    this.state = { ...(this.state || {}), ...s };
    const st = this.state;
    if (Array.isArray(s.cell_voltages) && s.cell_voltages.length === N_SERIES) {
      this.values.voltage.set(s.cell_voltages);
    } else if (st.cell_voltage_min != null && st.cell_voltage_max != null && st.cell_voltage_max >= st.cell_voltage_min) {
      // a reading with the BMS's lowest and highest group voltage: the pattern spans exactly that
      const lo = Math.min(...this.pattern), hi = Math.max(...this.pattern);
      for (let i = 0; i < N_SERIES; i++) {
        this.values.voltage[i] = st.cell_voltage_min + (st.cell_voltage_max - st.cell_voltage_min) * (this.pattern[i] - lo) / (hi - lo);
      }
    } else if (st.voltage !== null && st.voltage !== undefined) {
      const mean = st.voltage / N_SERIES;
      const spread = 0.004 + 0.04 * (st.anomaly_score || 0);  // V
      for (let i = 0; i < N_SERIES; i++) this.values.voltage[i] = mean + spread * this.pattern[i];
    }
    if (Array.isArray(s.cell_temperatures) && s.cell_temperatures.length === N_SERIES) {
      this.values.temperature.set(s.cell_temperatures);
    } else if (st.temperature !== null && st.temperature !== undefined) {
      const drop = Math.min(Math.max(0.15 * (st.temperature - 15), 0.5), 8);  // °C from hottest to edge
      for (let i = 0; i < N_SERIES; i++) this.values.temperature[i] = st.temperature - drop * (1 - this.heat[i]);
    }
    const v = this.values.voltage;
    let vmin = Infinity, vmax = -Infinity;
    for (const x of v) { vmin = Math.min(vmin, x); vmax = Math.max(vmax, x); }
    const mid = (vmin + vmax) / 2, half = Math.max((vmax - vmin) / 2 * 1.2, 0.02);
    this.range.voltage = [mid - half, mid + half];
    // 216 A is 1 C for the nominal 96s3p x 72 Ah pack
    this.flow = st.current ? Math.max(-2, Math.min(2, st.current / 216)) : 0;
  }

  setMode(mode) { this.mode = mode; }

  /** The colour scale's ends for the legend, with the unit. */
  legend() {
    const [lo, hi] = this.range[this.mode];
    return this.mode === "voltage" ? [`${lo.toFixed(3)} V`, `${hi.toFixed(3)} V`] : [`${lo.toFixed(0)} °C`, `${hi.toFixed(0)} °C`];
  }

  dispose() {
    cancelAnimationFrame(this._raf);
    this.resizeObserver.disconnect();
    this.renderer.dispose();
  }
}
