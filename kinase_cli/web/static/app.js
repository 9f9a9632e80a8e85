// The kinase web view: one tile per stream, redrawn from server-sent events.
// Every string from the queue or the rules is untrusted: it only ever reaches the page through textContent.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

const token = new URLSearchParams(location.search).get("token");
const tiles = new Map();

function withToken(path) {
  return token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function num(value, digits, unit) {
  if (value === null || value === undefined) return "-";
  return value.toFixed(digits) + (unit ? " " + unit : "");
}

function count(value) {
  return value === null || value === undefined ? "-" : String(value);
}

function shape(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// A name and its counts, centred on a normalised point of the frame.
function mark(cls, text, x, y) {
  const node = el("span", "mark " + cls, text);
  node.style.left = (x * 100).toFixed(2) + "%";
  node.style.top = (y * 100).toFixed(2) + "%";
  return node;
}

function figures(c) {
  if (!c) return "-";
  return c.kind === "line" ? "in " + c.in + " · out " + c.out : c.inside + " inside";
}

// The stream's lines and zones in force, over its frame, each with its counts from the newest frame that carried them.
function overlay(t, s) {
  if (s.size) t.frame.style.aspectRatio = s.size[0] + " / " + s.size[1];
  const counted = new Map(s.counts.map((c) => [c.kind + " " + c.name, c]));
  const shapes = [], marks = [];
  for (const z of s.overlay.zones) {
    shapes.push(shape("polygon", { class: "zone", points: z.polygon.map((p) => p.join(",")).join(" ") }));
    const x = z.polygon.reduce((sum, p) => sum + p[0], 0) / z.polygon.length;
    const y = z.polygon.reduce((sum, p) => sum + p[1], 0) / z.polygon.length;
    marks.push(mark("zone", z.name + ": " + figures(counted.get("zone " + z.name)), x, y));
  }
  for (const l of s.overlay.lines) {
    const [[x1, y1], [x2, y2]] = l.points;
    shapes.push(shape("line", { class: "line", x1, y1, x2, y2 }));
    shapes.push(shape("circle", { class: "in-side", cx: l.in_side[0], cy: l.in_side[1], r: 0.012 }));
    marks.push(mark("line", l.name + ": " + figures(counted.get("line " + l.name)), (x1 + x2) / 2, (y1 + y2) / 2));
  }
  t.shapes.replaceChildren(...shapes);
  t.marks.replaceChildren(...marks);
  t.counts.replaceChildren(...s.counts.map((c) => {
    const li = el("li", c.kind);
    li.append(el("span", "count-name", c.name), el("span", "count-figures", figures(c)), el("span", "count-classes", c.by_class));
    return li;
  }));
}

function stat(parent, label) {
  const box = el("div", "stat");
  box.append(el("span", "label", label));
  const value = el("span", "value", "-");
  box.append(value);
  parent.append(box);
  return value;
}

function chart(parent, label, color) {
  const box = el("figure", "chart");
  const canvas = el("canvas");
  const caption = el("figcaption", null, label);
  box.append(caption, canvas);
  parent.append(box);
  return { canvas, caption, label, color };
}

function draw(c, times, values, now, windowS, unit, bars) {
  // The x axis spans the data seen so far (at least a minute, at most the server's window), newest at the right.
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(c.canvas.clientWidth * ratio)), h = Math.max(1, Math.round(c.canvas.clientHeight * ratio));
  if (c.canvas.width !== w || c.canvas.height !== h) {
    c.canvas.width = w;
    c.canvas.height = h;
  }
  const ctx = c.canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#d0d7de";
  ctx.lineWidth = ratio;
  ctx.beginPath();
  ctx.moveTo(0, h - ratio / 2);
  ctx.lineTo(w, h - ratio / 2);
  ctx.stroke();
  const max = Math.max(1e-9, ...values);
  const span = Math.min(windowS, Math.max(60, times.length ? now - times[0] + 5 : 60));
  c.caption.textContent = c.label + " · last " + Math.round(span) + " s · max " + (values.length ? max.toFixed(max < 10 ? 1 : 0) : "-") + " " + unit;
  const x = (t) => w - ((now - t) / span) * w;
  const y = (v) => h - 2 * ratio - (v / max) * (h - 4 * ratio);
  ctx.fillStyle = ctx.strokeStyle = c.color;
  if (bars) {
    const width = Math.max(ratio, w / span - ratio);
    values.forEach((v, i) => ctx.fillRect(x(times[i]) - width, y(v), width, h - y(v)));
    return;
  }
  ctx.lineWidth = 1.5 * ratio;
  ctx.beginPath();
  values.forEach((v, i) => (i === 0 ? ctx.moveTo(x(times[i]), y(v)) : ctx.lineTo(x(times[i]), y(v))));
  ctx.stroke();
  values.forEach((v, i) => {
    ctx.beginPath();
    ctx.arc(x(times[i]), y(v), 1.8 * ratio, 0, 2 * Math.PI);
    ctx.fill();
  });
}

function makeTile(s) {
  const root = el("article", "tile");
  root.dataset.tile = String(s.id);
  const title = el("h2", "stream");
  root.append(title);
  const frame = el("div", "frame");
  const img = el("img");
  img.alt = "latest annotated frame";
  const noImage = el("div", "no-image", "no frame yet");
  const shapes = shape("svg", { class: "shapes", viewBox: "0 0 1 1", preserveAspectRatio: "none" });
  const marks = el("div", "marks");
  frame.append(img, noImage, shapes, marks);
  root.append(frame);
  const stats = el("div", "stats");
  root.append(stats);
  const t = {
    root, title, img, noImage, frame, shapes, marks, shownVersion: 0,
    frames: stat(stats, "frames"), fps: stat(stats, "fps"), inference: stat(stats, "inference"),
    latency: stat(stats, "latency"), p95: stat(stats, "p95"), lag: stat(stats, "lag"),
    drops: stat(stats, "drops"), gaps: stat(stats, "gaps"),
  };
  t.frames.classList.add("frames");
  t.latest = el("p", "latest");
  root.append(t.latest);
  t.counts = el("ul", "counts");
  root.append(t.counts);
  t.classes = el("ul", "classes");
  root.append(t.classes);
  const charts = el("div", "charts");
  root.append(charts);
  t.fpsChart = chart(charts, "fps", "#0969da");
  t.latencyChart = chart(charts, "latency", "#8250df");
  t.lagChart = chart(charts, "lag", "#bf3989");
  t.status = el("p", "status");
  root.append(t.status);
  document.getElementById("tiles").append(root);
  return t;
}

// Drops and gaps: what the messages carry when they do, else the worker's own metrics (CloudWatch).
function accounting(fromMessages, fromMetrics, metricsWindowS) {
  if (fromMessages !== null && fromMessages !== undefined) return { text: String(fromMessages), note: null };
  if (metricsWindowS && fromMetrics !== undefined) {
    return { text: String(fromMetrics), note: "CloudWatch, last " + Math.round(metricsWindowS / 3600) + " h" };
  }
  return { text: "-", note: null };
}

function update(t, s, now, windowS, metricsWindowS) {
  t.title.textContent = s.stream;
  t.root.classList.toggle("quiet", s.quiet);
  t.frames.textContent = String(s.frames);
  t.fps.textContent = num(s.fps, 1);
  t.inference.textContent = num(s.inference_ms, 1, "ms");
  t.latency.textContent = num(s.latency_ms, 0, "ms");
  t.p95.textContent = num(s.latency_p95_ms, 0, "ms");
  t.lag.textContent = num(s.lag_s, 1, "s");
  const drops = accounting(s.drops, s.worker.drops, metricsWindowS);
  const gaps = accounting(s.gaps, s.worker.gaps, metricsWindowS);
  t.drops.textContent = drops.text;
  t.gaps.textContent = gaps.text + (gaps.note && s.worker.frames_gapped ? " (" + s.worker.frames_gapped + " frames)" : "");
  const tracks = new Map(s.tracks);
  t.latest.textContent = "frame " + count(s.frame_index) + ": " +
    (s.latest.length ? s.latest.map(([name, n]) => name + " ×" + n + (tracks.get(name) || []).map((id) => " #" + id).join("")).join(", ") : "no detections");
  overlay(t, s);
  t.classes.replaceChildren(...s.classes.map(([name, n]) => {
    const li = el("li");
    li.append(el("span", "class-name", name), el("span", "class-count", String(n)));
    return li;
  }));
  if (s.image_version && s.image_version !== t.shownVersion) {
    t.shownVersion = s.image_version;
    t.img.src = withToken("frames/" + s.id + "?v=" + s.image_version);
  }
  t.noImage.hidden = Boolean(s.image_version);
  const parts = [];
  if (s.quiet) parts.push("quiet for " + num(s.quiet_s, 0, "s"));
  if (s.image_error) parts.push("frame: " + s.image_error);
  const note = drops.note || gaps.note;
  if (note) parts.push("drops and gaps: " + note);
  t.status.textContent = parts.join(" · ");
  draw(t.fpsChart, s.series.t, s.series.fps, now, windowS, "frames/s", true);
  draw(t.latencyChart, s.series.t, s.series.latency_ms, now, windowS, "ms", false);
  draw(t.lagChart, s.series.t, s.series.lag_s, now, windowS, "s", false);
}

function render(state) {
  document.getElementById("queue").textContent = state.queue;
  document.getElementById("waiting").textContent = count(state.waiting);
  document.getElementById("in-flight").textContent = count(state.in_flight);
  document.getElementById("dlq").textContent = count(state.dlq);
  document.getElementById("frames").textContent = String(state.frames);
  document.getElementById("invalid").textContent = String(state.invalid);
  const metrics = document.getElementById("metrics");
  metrics.textContent = state.metrics_error ? "unavailable: " + state.metrics_error : (state.metrics_window_s ? "CloudWatch" : "-");
  metrics.classList.toggle("warn", Boolean(state.metrics_error));
  const rules = document.getElementById("rules");
  rules.textContent = (state.rules_version === null ? "none" : "v" + state.rules_version) + (state.rules_error ? " (" + state.rules_error + ")" : "");
  rules.classList.toggle("warn", Boolean(state.rules_error));
  document.getElementById("empty").hidden = state.streams.length > 0;
  for (const s of state.streams) {
    let t = tiles.get(s.id);
    if (!t) {
      t = makeTile(s);
      tiles.set(s.id, t);
    }
    update(t, s, state.now, state.window_s, state.metrics_window_s);
  }
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource(withToken("events"));
  source.onopen = () => { link.textContent = "live"; };
  source.onerror = () => { link.textContent = "reconnecting"; };
  source.onmessage = (event) => render(JSON.parse(event.data));
}

connect();
