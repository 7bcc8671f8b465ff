// The live page: state from /api/live, then pushed updates from /api/live/events (SSE);
// the video is the reporter's overlay as MJPEG. Cards are updated in place (30 students
// update at 2 FPS without rebuilding the page).
"use strict";
const HISTORY_SECONDS = 300;
const STALE_SECONDS = 10;
const MANY_STUDENTS = 12;  // above this the cards go compact (body.many in style.css)
const MIN_WINDOW_SECONDS = 20;
const state = { session: null, labels: [], students: new Map(), classLevelOnly: false, firstT: null };
window.__latencies = [];  // seconds from capture to this page, per update (read by the benchmark)

function card(id) {
  let s = state.students.get(id);
  if (s) return s;
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.student = id;
  const who = document.createElement("span"); who.className = "who"; who.textContent = `id ${id}`;
  const level = document.createElement("span"); level.className = "level";
  const label = document.createElement("div"); label.className = "label";
  const svg = svgEl("svg", { "aria-label": `level of student ${id}, last minutes` });
  const at2 = document.createElement("div"); at2.className = "at2";
  const marks = document.createElement("div"); marks.className = "marks";
  for (let l = 0; l < 4; l++) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = l; b.dataset.level = l;
    b.title = `mark: you see level ${l} now`;
    b.addEventListener("click", () => postMark(state.session, id, s.lastSeen, l));
    marks.appendChild(b);
  }
  el.append(who, level, label, svg, at2, marks);
  s = { el, level, label, svg, at2, points: [], lastSeen: 0 };
  state.students.set(id, s);
  const cards = document.getElementById("cards");
  const after = [...cards.children].find(c => Number(c.dataset.student) > id);
  cards.insertBefore(el, after || null);
  return s;
}

function renderStudent(row, now) {
  const s = card(row.id);
  s.el.querySelector(".who").textContent = row.name ? `${row.name} (id ${row.id})` : `id ${row.id}`;
  s.lastSeen = row.last_seen;
  s.el.className = `card level-${row.level}` + (now - row.last_seen > STALE_SECONDS ? " stale" : "");
  s.el.dataset.level = row.level;
  s.level.textContent = row.level;
  s.label.textContent = state.labels[row.level] || "";
  s.at2.textContent = `level 2+: ${formatDuration(row.seconds_at_level_2_or_more)}`;
  while (s.points.length && s.points[0][0] < now - HISTORY_SECONDS) s.points.shift();
  if (s.points.length && (state.firstT === null || s.points[0][0] < state.firstT)) state.firstT = s.points[0][0];
  // The chart spans the class so far: at least a minute, at most the last five.
  const span = Math.min(HISTORY_SECONDS, Math.max(MIN_WINDOW_SECONDS, now - (state.firstT ?? now)));
  sparkline(s.svg, s.points, now - span, now);
}

function renderHeader(doc) {
  document.getElementById("model-name").textContent = doc.model.name || "-";
  document.getElementById("model-note").textContent = doc.note || "";
  const status = document.getElementById("status");
  while (status.firstChild) status.removeChild(status.firstChild);
  if (!doc.session) {
    status.textContent = "Waiting for the class to start...";
  } else if (doc.ended) {
    status.append(`Session ${doc.session} has ended: `);
    const a = document.createElement("a");
    a.href = `/sessions/${encodeURIComponent(doc.session)}`; a.textContent = "its report";
    status.appendChild(a);
  } else {
    status.textContent = doc.class_level_only
      ? `Session ${doc.session}: live (class level only: no per-student view, no video)`
      : `Session ${doc.session}: live, ${doc.students.length} students`;
  }
  renderTotals(document.getElementById("totals"), doc.totals, doc.model.labels);
  document.body.classList.toggle("many", state.students.size > MANY_STUDENTS);
  document.body.dataset.session = doc.session || "";
  document.body.dataset.seq = doc.seq ?? "";
}

function resetIfNewSession(doc) {
  if (doc.session === state.session) return;
  state.session = doc.session;
  state.firstT = null;
  state.students.clear();
  const cards = document.getElementById("cards");
  while (cards.firstChild) cards.removeChild(cards.firstChild);
}

function applyFull(doc) {
  resetIfNewSession(doc);
  if (!doc.class_level_only) dropMissing(doc);
  state.labels = doc.model.labels;
  state.classLevelOnly = doc.class_level_only;
  const now = doc.t_capture || Date.now() / 1000;
  for (const row of doc.students) {
    card(row.id).points = row.history.slice();
    renderStudent(row, now);
  }
  renderHeader(doc);
  showVideo(!doc.class_level_only);
}

// Cards of students no longer in the document (gone for longer than the charts show) go.
function dropMissing(doc) {
  const present = new Set(doc.students.map(row => row.id));
  for (const [id, s] of state.students) {
    if (!present.has(id)) { s.el.remove(); state.students.delete(id); }
  }
}

function applyEvent(doc) {
  resetIfNewSession(doc);
  if (!doc.class_level_only) dropMissing(doc);
  state.labels = doc.model.labels;
  const now = doc.t_capture || Date.now() / 1000;
  for (const row of doc.students) {
    const s = card(row.id);
    if (row.last_seen === doc.t_capture) s.points.push([row.last_seen, row.level]);
    renderStudent(row, now);
  }
  renderHeader(doc);
  if (doc.t_capture && !doc.ended) window.__latencies.push(Date.now() / 1000 - doc.t_capture);
}

let videoWanted = null;
function showVideo(on) {
  if (on === videoWanted) return;
  videoWanted = on;
  document.getElementById("video-box").classList.toggle("hidden", !on);
  document.getElementById("cards").classList.toggle("hidden", !on);
  const img = document.getElementById("video");
  if (!on) { img.removeAttribute("src"); return; }
  // Set after the page's load event: an endless MJPEG would otherwise hold "load" forever.
  const start = () => { img.src = "/api/live/video.mjpg?t=" + Date.now(); };
  if (document.readyState === "complete") start(); else window.addEventListener("load", start, { once: true });
  img.addEventListener("error", () => setTimeout(() => { if (videoWanted) start(); }, 2000));
}

async function refresh() {
  const r = await fetch("/api/live", { cache: "no-store" });
  if (r.ok) applyFull(await r.json());
}

function connect() {
  const es = new EventSource("/api/live/events");
  let lost = false;
  es.onmessage = ev => applyEvent(JSON.parse(ev.data));
  es.onerror = () => { lost = true; };
  es.onopen = () => { if (lost) refresh(); };  // missed updates while away: take the full state again
}

document.addEventListener("DOMContentLoaded", () => { refresh().finally(connect); });
