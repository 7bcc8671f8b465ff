// Small SVG charts, no library: a sparkline of a student's level and the session's level
// strips. Level 0 (engaged) is drawn at the top, 3 (checked out) at the bottom.
"use strict";
const SVG_NS = "http://www.w3.org/2000/svg";
// A level is never told by colour alone: a shape and a word go with it everywhere (the palette
// in style.css is Okabe and Ito's, told apart with the common colour-vision deficiencies).
const LEVEL_SHAPES = ["\u25CF", "\u25B2", "\u25C6", "\u25A0"];  // circle, triangle, diamond, square
const levelMark = level => `${LEVEL_SHAPES[level] || "?"} ${level}`;
const levelWords = (level, labels) => `${levelMark(level)} ${labels[level] || ""}`.trim();

// The key under a chart: a swatch, the shape, the number and the word of each level.
function legend(el, labels) {
  while (el.firstChild) el.removeChild(el.firstChild);
  labels.forEach((label, i) => {
    const item = document.createElement("span");
    item.className = `key l${i}`;
    item.textContent = levelWords(i, labels);
    el.appendChild(item);
  });
}

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// points: [[t, level], ...] sorted by t; drawn as steps over [t0, t1].
function sparkline(svg, points, t0, t1) {
  const w = 140, h = 34, pad = 3;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  for (let level = 0; level < 4; level++) {
    const y = pad + (h - 2 * pad) * level / 3;
    svg.appendChild(svgEl("line", { x1: 0, x2: w, y1: y, y2: y, class: "grid" }));
  }
  const span = Math.max(1, t1 - t0);
  const x = t => Math.max(0, Math.min(w, (t - t0) / span * w));
  const y = l => pad + (h - 2 * pad) * l / 3;
  let d = "";
  let prev = null;
  for (const [t, level] of points) {
    if (t < t0) continue;
    if (prev === null || t - prev[0] > 2.0) d += `M${x(t).toFixed(1)},${y(level).toFixed(1)}`;
    else d += `H${x(t).toFixed(1)}V${y(level).toFixed(1)}`;
    prev = [t, level];
  }
  if (prev) d += `H${x(Math.min(t1, prev[0] + 0.5)).toFixed(1)}`;
  svg.appendChild(svgEl("path", { d: d || "M0,0", class: "spark" }));
}

// rows: [{label, student, entries: [{t, level, capture?, media?}]}] (t: the axis's time); onPick(student,
// capture time, media time) when a cell is clicked.
function levelStrips(container, rows, t0, t1, onPick, formatTime) {
  // The labels' column fits the longest (a roster's name with its id), within reason.
  const longest = Math.max(0, ...rows.map(r => String(r.label).length));
  const rowH = 16, labelW = Math.round(Math.min(220, Math.max(60, 8 + 6.2 * longest)));
  const width = Math.max(400, Math.min(1100, container.clientWidth || 900));
  const plotW = width - labelW - 10, height = rows.length * rowH + 24;
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": "level over time per student" });
  const span = Math.max(1, t1 - t0);
  const x = t => labelW + (t - t0) / span * plotW;
  rows.forEach((row, i) => {
    const y = i * rowH + 2;
    const label = svgEl("text", { x: 2, y: y + rowH - 5 });
    label.textContent = row.label;
    svg.appendChild(label);
    const es = row.entries;
    for (let k = 0; k < es.length; k++) {
      const e = es[k];
      const next = k + 1 < es.length ? Math.min(es[k + 1].t, e.t + 2.0) : e.t + 0.5;
      const cell = svgEl("rect", { x: x(e.t).toFixed(2), y, width: Math.max(1, x(next) - x(e.t)).toFixed(2),
                                   height: rowH - 3, class: `cell l${e.level}` });
      const title = svgEl("title");
      title.textContent = `${row.label} at ${formatTime(e.t, e.media)}: level ${e.level}`;
      cell.appendChild(title);
      // A mark names the capture time (what the server matches predictions by), whatever the chart's axis.
      if (onPick) cell.addEventListener("click", () => onPick(row.student, e.capture ?? e.t, e.media));
      svg.appendChild(cell);
    }
  });
  for (let k = 0; k <= 4; k++) {
    const t = t0 + span * k / 4;
    const tick = svgEl("text", { x: Math.min(width - 40, x(t) - 10), y: height - 4 });
    tick.textContent = formatTime(t);
    svg.appendChild(tick);
  }
  while (container.firstChild) container.removeChild(container.firstChild);
  container.appendChild(svg);
  // For overlays (the teacher's marks): x of a time, y of a student's row.
  return { svg, x, rowY: student => { const i = rows.findIndex(r => r.student === student);
                                       return i < 0 ? null : i * rowH + 2 + (rowH - 3) / 2; } };
}

// The class line: points [[t, share at 0, 1, 2, 3], ...] sorted by t, drawn as stacked bands
// over [t0, t1], level 0 at the top; each share of a point adds up to the full height.
function classLine(svg, points, t0, t1, labels) {
  const w = 600, h = 64;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const pts = points.length === 1 ? [points[0], [points[0][0] + 1, ...points[0].slice(1)]] : points;
  const span = Math.max(1, t1 - t0);
  const x = t => ((t - t0) / span * w).toFixed(1);
  for (let level = 0; level < 4; level++) {
    const upper = [], lower = [];
    for (const p of pts) {
      const before = p.slice(1, 1 + level).reduce((a, b) => a + b, 0);
      upper.push(`${x(p[0])},${(before * h).toFixed(2)}`);
      lower.unshift(`${x(p[0])},${((before + p[1 + level]) * h).toFixed(2)}`);
    }
    const band = svgEl("polygon", { points: [...upper, ...lower].join(" "), class: `band l${level}` });
    const title = svgEl("title");
    title.textContent = `level ${level} ${labels[level] || ""}`;
    band.appendChild(title);
    svg.appendChild(band);
  }
  svg.dataset.points = points.length;
}

// "45% engaged, 30% slightly bored, ...": the latest point of the class line in words.
function shareWords(point, labels) {
  return point ? point.slice(1).map((share, i) => `${Math.round(share * 100)}% ${labels[i] || i}`).join(", ") : "";
}

function formatDuration(seconds) {
  const s = Math.round(seconds), m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, 3000);
}

function renderTotals(el, totals, labels) {
  while (el.firstChild) el.removeChild(el.firstChild);
  const add = (cls, name, value) => {
    const div = document.createElement("div");
    div.className = "total " + cls;
    const b = document.createElement("b");
    b.textContent = value;
    div.append(b, name);
    el.appendChild(div);
  };
  add("", "frames", totals.frames);
  add("", "faces seen", totals.faces);
  labels.forEach((label, i) => add("l" + i, levelWords(i, labels), totals.levels[String(i)] || 0));
}

// stream: the student's (ids start at 1 in each stream of a class); label: how the page names them.
async function postMark(session, student, t, level, stream = "", label = null) {
  const r = await fetch("/api/marks", { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify({ session, stream, student, t, level_given: level }) });
  const body = await r.json().catch(() => ({}));
  if (r.ok) {
    const m = body.mark;
    toast(`marked student ${label ?? student}: ${level} (model said ${m.level_predicted ?? "-"})`);
  } else {
    const d = Array.isArray(body.detail) ? body.detail.map(e => `${e.field}: ${e.message}`).join("; ") : body.detail;
    toast(`mark not stored: ${d || r.status}`);
  }
  return r.ok ? body : null;
}
