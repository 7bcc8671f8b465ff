// The live page: state from /api/live, then pushed updates from /api/live/events (SSE);
// the video is the reporter's overlay as MJPEG, one tile per stream. Cards are updated in
// place (30 students update at 2 FPS without rebuilding the page). A student is (stream, id):
// with several streams the cards are grouped by stream and named "<stream> #<id>".
"use strict";
const HISTORY_SECONDS = 300;
const STALE_SECONDS = 10;
const MANY_STUDENTS = 12;  // above this the cards go compact (body.many in style.css)
const MIN_WINDOW_SECONDS = 20;
const state = { session: null, labels: [], students: new Map(), streams: [], classLevelOnly: false, firstT: null,
                classLine: [] };
window.__latencies = [];  // seconds from capture to this page, per update (read by the benchmark)

const keyOf = (stream, id) => `${stream}/${id}`;
const cardId = (stream, id) => `card-${encodeURIComponent(stream).replace(/[^A-Za-z0-9_-]/g, "_")}-${id}`;
const several = () => state.streams.length > 1;
const who = (stream, id) => (several() ? `${stream} #${id}` : `id ${id}`);

// The cards of one stream: a group with a heading (shown when the class has several streams).
function group(stream) {
  const cards = document.getElementById("cards");
  let g = [...cards.children].find(c => c.dataset.stream === stream);
  if (g) return g.querySelector(".cards-grid");
  g = document.createElement("div");
  g.className = "stream-group";
  g.dataset.stream = stream;
  const head = document.createElement("h3"); head.className = "stream-head"; head.textContent = stream;
  const grid = document.createElement("div"); grid.className = "cards-grid";
  g.append(head, grid);
  cards.insertBefore(g, [...cards.children].find(c => c.dataset.stream > stream) || null);
  return grid;
}

function card(stream, id) {
  const key = keyOf(stream, id);
  let s = state.students.get(key);
  if (s) return s;
  const el = document.createElement("article");
  el.className = "card";
  el.id = cardId(stream, id);
  el.dataset.student = id;
  el.dataset.stream = stream;
  const name = document.createElement("span"); name.className = "who"; name.textContent = who(stream, id);
  const level = document.createElement("span"); level.className = "level";
  const label = document.createElement("div"); label.className = "label";
  const svg = svgEl("svg", { "aria-label": `level of student ${who(stream, id)}, last minutes` });
  const at2 = document.createElement("div"); at2.className = "at2";
  const marks = document.createElement("div"); marks.className = "marks";
  const mark = l => postMark(state.session, id, s.lastSeen, l, stream, name.textContent);
  for (let l = 0; l < 4; l++) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = levelMark(l); b.dataset.level = l;
    b.addEventListener("click", () => mark(l));
    marks.appendChild(b);
  }
  // Keyboard: a card takes the focus (Tab), then 0-3 marks what the teacher sees.
  el.tabIndex = 0;
  el.setAttribute("aria-keyshortcuts", "0 1 2 3");
  el.addEventListener("keydown", ev => {
    if (ev.target !== el || ev.altKey || ev.ctrlKey || ev.metaKey || !/^[0-3]$/.test(ev.key)) return;
    ev.preventDefault();
    mark(Number(ev.key));
  });
  el.append(name, level, label, svg, at2, marks);
  s = { el, level, label, svg, at2, points: [], lastSeen: 0 };
  state.students.set(key, s);
  const grid = group(stream);
  grid.insertBefore(el, [...grid.children].find(c => Number(c.dataset.student) > id) || null);
  return s;
}

// Each mark button says whom and which level to a screen reader (its face shows shape and number).
function labelMarks(s, shown) {
  if (s.marksFor === shown + state.labels.join()) return;
  s.marksFor = shown + state.labels.join();
  for (const b of s.el.querySelectorAll(".marks button")) {
    const l = Number(b.dataset.level);
    b.title = `mark ${shown}: you see level ${l} ${state.labels[l] || ""} now (key ${l})`;
    b.setAttribute("aria-label", b.title);
  }
  s.el.setAttribute("aria-label", `${shown}: press 0 to 3 to mark the level you see`);
}

function renderStudent(row, now) {
  const s = card(row.stream, row.id);
  const label = who(row.stream, row.id);
  const shown = row.name ? `${row.name} (${label})` : label;
  s.el.querySelector(".who").textContent = shown;
  labelMarks(s, shown);
  s.el.dataset.name = row.name || "";
  s.el.dataset.at2 = row.seconds_at_level_2_or_more;
  s.lastSeen = row.last_seen;
  s.el.className = `card level-${row.level}` + (now - row.last_seen > STALE_SECONDS ? " stale" : "");
  s.el.dataset.level = row.level;
  s.level.textContent = levelMark(row.level);
  s.level.title = state.labels[row.level] || "";
  s.label.textContent = state.labels[row.level] || "";
  s.at2.textContent = `level 2+: ${formatDuration(row.seconds_at_level_2_or_more)}`;
  while (s.points.length && s.points[0][0] < now - HISTORY_SECONDS) s.points.shift();
  if (s.points.length && (state.firstT === null || s.points[0][0] < state.firstT)) state.firstT = s.points[0][0];
  // The chart spans the class so far: at least a minute, at most the last five.
  const span = Math.min(HISTORY_SECONDS, Math.max(MIN_WINDOW_SECONDS, now - (state.firstT ?? now)));
  sparkline(s.svg, s.points, now - span, now);
}

// A stream that ended while the class goes on (a camera gone): said on its row and its tile.
const ended = (doc, stream) => (doc.stream_ends || {})[stream];
const endedText = (doc, stream) => (ended(doc, stream) ? `, ended (${ended(doc, stream).end_reason || "?"})` : "");

function renderTiles(doc) {
  for (const fig of document.querySelectorAll("#videos figure")) {
    fig.querySelector(".stream-name").textContent = fig.dataset.stream + endedText(doc, fig.dataset.stream);
    fig.classList.toggle("ended", Boolean(ended(doc, fig.dataset.stream)));
  }
}

// Several streams: a row of totals per stream (class level only too: no student in them).
function renderStreamTotals(doc) {
  const box = document.getElementById("stream-totals");
  const per = doc.stream_totals || null;
  box.classList.toggle("hidden", !per);
  while (box.firstChild) box.removeChild(box.firstChild);
  if (!per) return;
  const students = new Map();
  for (const row of doc.students) students.set(row.stream, (students.get(row.stream) || 0) + 1);
  for (const stream of Object.keys(per)) {
    const row = document.createElement("div");
    row.className = "stream-total"; row.dataset.stream = stream;
    const name = document.createElement("span"); name.className = "stream-name";
    name.textContent = (doc.class_level_only ? stream : `${stream}: ${students.get(stream) || 0} students`) +
      endedText(doc, stream);
    row.classList.toggle("ended", Boolean(ended(doc, stream)));
    const totals = document.createElement("div"); totals.className = "totals";
    renderTotals(totals, per[stream], doc.model.labels);
    row.append(name, totals);
    box.appendChild(row);
  }
}

function renderHeader(doc) {
  document.getElementById("model-name").textContent = doc.model.name || "-";
  document.getElementById("model-note").textContent = doc.note || "";
  const status = document.getElementById("status");
  while (status.firstChild) status.removeChild(status.firstChild);
  const streams = several() ? ` from ${state.streams.length} streams (${state.streams.join(", ")})` : "";
  if (!doc.session) {
    status.textContent = "Waiting for the class to start...";
  } else if (doc.ended) {
    status.append(`Session ${doc.session} has ended: `);
    const a = document.createElement("a");
    a.href = `/sessions/${encodeURIComponent(doc.session)}`; a.textContent = "its report";
    status.appendChild(a);
  } else {
    status.textContent = doc.class_level_only
      ? `Session ${doc.session}: live${streams} (class level only: no per-student view, no video)`
      : `Session ${doc.session}: live, ${doc.students.length} students${streams}`;
  }
  renderTotals(document.getElementById("totals"), doc.totals, doc.model.labels);
  renderAlerts(doc);
  sortCards();
  renderClassLine(doc);
  renderStreamTotals(doc);
  renderTiles(doc);
  document.body.classList.toggle("many", state.students.size > MANY_STUDENTS);
  document.body.classList.toggle("several", several());
  document.body.dataset.session = doc.session || "";
  document.body.dataset.seq = doc.seq ?? "";
}

function resetIfNewSession(doc) {
  if (doc.session === state.session) return;
  state.session = doc.session;
  state.firstT = null;
  state.classLine = [];
  state.students.clear();
  state.streams = [];
  for (const id of ["cards", "videos"]) {
    const box = document.getElementById(id);
    for (const el of [...box.children]) if (el.dataset.stream !== undefined) el.remove();
  }
}

function setStreams(doc) {
  const streams = doc.streams || [];
  const changed = streams.join("\n") !== state.streams.join("\n");
  state.streams = streams;
  if (!changed) return;
  // Labels depend on how many streams there are: "id 1" alone, "cam0 #1" with others.
  for (const [key, s] of state.students) {
    const [stream, id] = [key.slice(0, key.lastIndexOf("/")), key.slice(key.lastIndexOf("/") + 1)];
    s.el.querySelector(".who").textContent = who(stream, id);
  }
}

function applyFull(doc) {
  resetIfNewSession(doc);
  state.classLine = (doc.class_line || []).slice();
  setStreams(doc);
  if (!doc.class_level_only) dropMissing(doc);
  state.labels = doc.model.labels;
  state.classLevelOnly = doc.class_level_only;
  const now = doc.t_capture || Date.now() / 1000;
  for (const row of doc.students) {
    card(row.stream, row.id).points = row.history.slice();
    renderStudent(row, now);
  }
  renderHeader(doc);
  showVideo(!doc.class_level_only);
  renderTiles(doc);
}

// Cards of students no longer in the document (gone for longer than the charts show) go.
function dropMissing(doc) {
  const present = new Set(doc.students.map(row => keyOf(row.stream, row.id)));
  for (const [key, s] of state.students) {
    if (!present.has(key)) { s.el.remove(); state.students.delete(key); }
  }
}

function applyEvent(doc) {
  resetIfNewSession(doc);
  const point = doc.class_point, line = state.classLine;
  if (point && (!line.length || point[0] > line[line.length - 1][0])) line.push(point);
  setStreams(doc);
  if (!doc.class_level_only) dropMissing(doc);
  state.labels = doc.model.labels;
  const now = doc.t_capture || Date.now() / 1000;
  for (const row of doc.students) {
    const s = card(row.stream, row.id);
    if (row.last_seen === doc.t_capture && !doc.status_only) s.points.push([row.last_seen, row.level]);
    renderStudent(row, now);
  }
  renderHeader(doc);
  showVideo(!doc.class_level_only);
  renderTiles(doc);
  if (doc.t_capture && !doc.ended && !doc.status_only) window.__latencies.push(Date.now() / 1000 - doc.t_capture);
}

// One tile per stream, each its own MJPEG (/api/live/video.mjpg?stream=<id>).
function tile(stream) {
  const box = document.getElementById("videos");
  let fig = [...box.children].find(c => c.dataset.stream === stream);
  if (fig) return fig;
  fig = document.createElement("figure");
  fig.className = "video"; fig.dataset.stream = stream;
  const img = document.createElement("img");
  img.alt = `the annotated video of stream ${stream}`;
  const caption = document.createElement("figcaption"); caption.className = "stream-name"; caption.textContent = stream;
  fig.append(caption, img);
  box.insertBefore(fig, [...box.children].find(c => c.dataset.stream > stream) || null);
  // Not while the tab is hidden: nobody sees it, and a video nobody holds is not drawn at all (the reporter).
  const start = () => {
    if (!document.hidden) img.src = `/api/live/video.mjpg?stream=${encodeURIComponent(stream)}&t=${Date.now()}`;
  };
  fig.startVideo = start;
  img.addEventListener("error", () => setTimeout(() => { if (videoWanted && fig.isConnected) start(); }, 2000));
  // Set after the page's load event: an endless MJPEG would otherwise hold "load" forever.
  if (document.readyState === "complete") start(); else window.addEventListener("load", start, { once: true });
  return fig;
}

let videoWanted = null;
// A tab in the background lets go of its video, so the reporter stops drawing it; back in front, it opens again.
document.addEventListener("visibilitychange", () => {
  for (const fig of document.querySelectorAll("#videos figure")) {
    const img = fig.querySelector("img");
    if (document.hidden) img.removeAttribute("src");
    else if (videoWanted && fig.startVideo) fig.startVideo();
  }
});
function showVideo(on) {
  if (on !== videoWanted) {
    videoWanted = on;
    document.getElementById("videos").classList.toggle("hidden", !on);
    document.getElementById("cards").classList.toggle("hidden", !on);
    document.querySelector(".cards-column .sort").classList.toggle("hidden", !on);
    if (!on) for (const img of document.querySelectorAll("#videos img")) img.removeAttribute("src");
  }
  if (on) for (const stream of state.streams) tile(stream);
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

// Needs attention: the students at level 2 or more for longer than the threshold, longest
// first (the server keeps the list: /api/live's and every event's `alerts`).
function renderAlerts(doc) {
  const box = document.getElementById("attention");
  box.hidden = doc.class_level_only;
  const list = document.getElementById("attention-list");
  while (list.firstChild) list.removeChild(list.firstChild);
  const alerts = doc.class_level_only ? [] : doc.alerts || [];
  const levels = new Map(doc.students.map(row => [keyOf(row.stream, row.id), row.level]));
  for (const a of alerts) {
    const li = document.createElement("li");
    li.dataset.stream = a.stream; li.dataset.student = a.student; li.dataset.seconds = a.seconds;
    const link = document.createElement("a");
    link.href = `#${cardId(a.stream, a.student)}`;
    const label = who(a.stream, a.student);
    link.textContent = a.name ? `${a.name} (${label})` : label;
    const level = levels.get(keyOf(a.stream, a.student)) ?? a.worst_level;
    li.append(link, ` at level ${level} ${state.labels[level] || ""} for ${formatDuration(a.seconds)}`);
    list.appendChild(li);
  }
  document.getElementById("attention-none").hidden = alerts.length > 0;
  announce(alerts, doc);
  box.classList.toggle("alerting", alerts.length > 0);
}

// The class line: the share of the class at each level since the lesson started (the server
// keeps it: /api/live's `class_line`, then each event's `class_point`).
function renderClassLine(doc) {
  const line = state.classLine;
  document.getElementById("class").hidden = !line.length;
  if (!line.length) return;
  classLine(document.getElementById("class-line"), line, line[0][0], line[line.length - 1][0], doc.model.labels);
  if (!document.getElementById("class-legend").firstChild) legend(document.getElementById("class-legend"), doc.model.labels);
  document.getElementById("class-now").textContent = `Now: ${shareWords(line[line.length - 1], doc.model.labels)}.`;
}

// Optional (off by default, kept in this browser): a short tone and/or a notification when a
// student is newly listed. Each is asked for by a click, which browsers require for either.
const listed = new Set();
window.__alertSounds = 0;  // tones played (read by the tests)
let audio = null;
function announce(alerts, doc) {
  const now = new Set(alerts.map(a => keyOf(a.stream, a.student)));
  const fresh = alerts.filter(a => !listed.has(keyOf(a.stream, a.student)));
  listed.clear(); for (const k of now) listed.add(k);
  if (!fresh.length || doc.status_only) return;
  if (document.getElementById("alert-sound").checked) beep();
  if (document.getElementById("alert-notify").checked && window.Notification && Notification.permission === "granted") {
    const names = fresh.map(a => a.name || who(a.stream, a.student)).join(", ");
    new Notification("Needs attention", { body: `${names}: level 2 or more for ${formatDuration(fresh[0].seconds)}` });
  }
}

function beep() {
  audio = audio || new AudioContext();
  const tone = audio.createOscillator(), gain = audio.createGain();
  tone.frequency.value = 660; gain.gain.value = 0.08;
  tone.connect(gain).connect(audio.destination);
  tone.start(); tone.stop(audio.currentTime + 0.18);
  window.__alertSounds += 1;
}

function setUpAnnouncements() {
  for (const id of ["alert-sound", "alert-notify"]) {
    const box = document.getElementById(id);
    box.checked = localStorage.getItem(id) === "1";
    box.addEventListener("change", () => {
      localStorage.setItem(id, box.checked ? "1" : "0");
      if (id === "alert-sound" && box.checked) audio = audio || new AudioContext();  // allowed: a click
      if (id === "alert-notify" && box.checked && window.Notification) Notification.requestPermission();
    });
  }
}

// The cards' order within each stream: by id (as the overlay numbers them), by level (highest
// first, then the longest at level 2+), or by name (students without one last, by id).
const ORDERS = {
  id: (a, b) => a.id - b.id,
  level: (a, b) => b.level - a.level || b.at2 - a.at2 || a.id - b.id,
  name: (a, b) => (a.name ? 0 : 1) - (b.name ? 0 : 1) || a.name.localeCompare(b.name) || a.id - b.id,
};

function sortCards() {
  const order = ORDERS[document.getElementById("sort-cards").value] || ORDERS.id;
  const facts = el => ({ el, id: Number(el.dataset.student), level: Number(el.dataset.level ?? -1),
                         at2: Number(el.dataset.at2 || 0), name: el.dataset.name || "" });
  for (const grid of document.querySelectorAll("#cards .cards-grid")) {
    const now = [...grid.children];
    const sorted = now.map(facts).sort(order).map(f => f.el);
    if (sorted.some((el, i) => el !== now[i])) grid.append(...sorted);  // moves, in order; focus stays
  }
  document.body.dataset.sort = document.getElementById("sort-cards").value;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sort-cards").addEventListener("change", sortCards);
  setUpAnnouncements();
  refresh().finally(connect);
});
