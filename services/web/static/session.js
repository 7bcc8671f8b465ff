// The session page: the report from /api/sessions/<id>, its totals (and each stream's when
// the class had several), one level strip per student, the episodes, and the marks'
// agreement; a click on a strip marks that moment. A student is (stream, id): with several
// streams a row is named "<stream> #<id>".
"use strict";
const session = document.body.dataset.session;
let report = null;
let chart = null;  // the level strips, for drawing the marks on them
let rowKeys = [];  // their rows' "<stream>/<id>", top to bottom
const several = () => (report.streams || []).length > 1;
const who = (stream, id) => (several() ? `${stream} #${id}` : `id ${id}`);
// A student as a person reads them: the report's name (a roster's or the screen's) and the id.
let names = new Map();  // "<stream>/<id>" -> the report's display name
const named = (stream, id, name = null) => {
  const n = name || names.get(keyOf(stream, id));
  return n ? `${n} (${who(stream, id)})` : who(stream, id);
};
const keyOf = (stream, id) => `${stream}/${id}`;

// Seconds into the class as the text and HTML reports write them (shared/clock.py): mm:ss.s,
// h:mm:ss.s from an hour on; rounded once to tenths, so 59.96 s reads 01:00.0, never 00:60.
function clock(seconds) {
  const tenths = Math.round(Math.max(0, seconds) * 10);
  const minutes = Math.floor(tenths / 600), hours = Math.floor(minutes / 60);
  const secs = `${String(Math.floor((tenths % 600) / 10)).padStart(2, "0")}.${tenths % 10}`;
  const mm = String(minutes % 60).padStart(2, "0");
  return hours ? `${hours}:${mm}:${secs}` : `${mm}:${secs}`;
}

// A capture time as a moment of the class; a file's media time when known (what the reports say:
// a file played faster than real time has capture times closer together than its own).
function offset(t, media = null) {
  return clock(media ?? t - (report.started || t));
}

// A file's class (every prediction has a media time) is charted in media time, as the reports
// say its moments; a live class (or one with a live stream) in capture time from the start.
let mediaTime = false;
const chartTime = (tCapture, tMedia) => (mediaTime ? tMedia : tCapture);
const chartClock = (t, media = null) => (mediaTime ? clock(media ?? t) : offset(t, media));
let rowsByKey = new Map();

// Where a mark sits on the chart: its media time when the report gave one, else that of its
// student's prediction nearest in capture time (a mark stored in Redis has capture time only).
function markTime(m, key) {
  if (!mediaTime) return m.t;
  if (m.t_media != null) return m.t_media;
  const entries = (rowsByKey.get(key) || { entries: [] }).entries;
  const near = entries.reduce((best, e) => (best && Math.abs(best.capture - m.t) <= Math.abs(e.capture - m.t) ? best : e), null);
  return near ? near.media : null;
}

function pick(key, t, media = null) {
  const cut = key.lastIndexOf("/");
  const stream = key.slice(0, cut), student = Number(key.slice(cut + 1));
  const box = document.getElementById("mark-box");
  document.getElementById("mark-what").textContent = `student ${named(stream, student)} at ${offset(t, media)}: you saw level`;
  const levels = document.getElementById("mark-levels");
  while (levels.firstChild) levels.removeChild(levels.firstChild);
  for (let l = 0; l < 4; l++) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = levelWords(l, report.model.labels); b.dataset.level = l;
    b.setAttribute("aria-keyshortcuts", String(l));
    b.addEventListener("click", async () => {
      if (await postMark(session, student, t, l, stream, named(stream, student))) { closeMarkBox(); loadMarks(); }
    });
    levels.appendChild(b);
  }
  box.hidden = false;
  levels.firstChild.focus();  // the keyboard goes where the choice is
}

// Each mark as a dot on its student's strip, in the colour of the level the teacher gave.
function drawMarks(marks) {
  if (!chart) return;
  for (const old of chart.svg.querySelectorAll("circle.mark")) old.remove();
  for (const m of marks) {
    // A mark without a stream (a one-stream class, an older mark) sits on that id's row.
    const key = m.stream ? keyOf(m.stream, Number(m.student)) : rowKeys.find(k => k.endsWith(`/${m.student}`));
    const y = key === undefined ? null : chart.rowY(key);
    const at = key === undefined ? null : markTime(m, key);
    if (y === null || at === null) continue;
    const dot = svgEl("circle", { cx: chart.x(at).toFixed(1), cy: y.toFixed(1), r: 4, class: `mark l${m.level_given}` });
    const title = svgEl("title");
    title.textContent = `your mark at ${offset(m.t, m.t_media)}: ${m.level_given}; the model said ${m.level_predicted ?? "-"}`;
    dot.appendChild(title);
    chart.svg.appendChild(dot);
  }
}

async function loadMarks() {
  const el = document.getElementById("agreement");
  const r = await fetch(`/api/sessions/${encodeURIComponent(session)}/marks`, { cache: "no-store" });
  if (!r.ok) { el.textContent = r.status === 404 ? "Marks are off for this class." : "Marks unavailable."; return; }
  const body = await r.json();
  drawMarks(body.marks);
  const a = body.agreement;
  el.textContent = a.marks
    ? `The model agreed with ${a.agreed} of your ${a.marks} marks (${Math.round(100 * a.rate)}%).`
    : "No marks yet: click a moment in the chart above to mark what you saw.";
  el.dataset.marks = a.marks;
}

function render() {
  names = new Map(report.students.filter(s => s.name).map(s => [keyOf(s.stream ?? report.stream, s.student), s.name]));
  document.getElementById("model-name").textContent = report.model.name || "-";
  document.getElementById("model-note").textContent = report.note || "";
  const when = report.started ? new Date(report.started * 1000).toISOString().replace("T", " ").slice(0, 19) : "-";
  document.getElementById("when").textContent =
    `Class ${report.class}, started ${when} UTC, ${report.totals.frames} frames, ${report.students.length} students` +
    (report.end_reason ? ` (ended: ${report.end_reason})` : "");
  renderTotals(document.getElementById("totals"), report.totals, report.model.labels);
  legend(document.getElementById("timeline-legend"), report.model.labels);
  renderStreams();
  const moments = report.timeline.length ? report.timeline : report.class_timeline;
  mediaTime = moments.length > 0 && moments.every(e => e.t_media != null);
  const t0 = mediaTime ? 0 : report.started || 0;
  let t1 = mediaTime ? t0 + 1 : Math.max(t0 + 1, report.ended || 0);
  for (const e of moments) t1 = Math.max(t1, chartTime(e.t_capture, e.t_media) + (mediaTime ? 0.5 : 0));
  let rows;
  if (report.timeline.length) {
    const by = new Map();
    for (const e of report.timeline) {
      const key = keyOf(e.stream, e.student);
      if (!by.has(key)) by.set(key, { stream: e.stream, id: e.student, entries: [] });
      by.get(key).entries.push({ t: chartTime(e.t_capture, e.t_media), capture: e.t_capture, media: e.t_media,
                                 level: e.level });
    }
    rows = [...by.entries()]
      .sort(([, a], [, b]) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.id - b.id))
      .map(([key, r]) => ({ label: named(r.stream, r.id), student: key, entries: r.entries }));
    rowKeys = rows.map(r => r.student);
    rowsByKey = new Map(rows.map(r => [r.student, r]));
    chart = levelStrips(document.getElementById("timeline"), rows, t0, t1, pick, chartClock);
    setUpMarkForm(rows);
  } else {
    // Class level only: the worst level of the class per frame, no student named.
    rows = [{ label: "class", student: null, entries: report.class_timeline.map(r => ({
      t: chartTime(r.t_capture, r.t_media), media: r.t_media, level: Math.max(...r.levels.map((n, i) => (n ? i : 0))) })) }];
    levelStrips(document.getElementById("timeline"), rows, t0, t1, null, chartClock);
    document.getElementById("chart-hint").textContent = "Class level only: the worst level of any student per frame.";
  }
  const tbody = document.querySelector("#episodes tbody");
  for (const e of report.episodes) {
    const tr = document.createElement("tr");
    for (const v of [named(e.stream, e.student), offset(e.start, e.start_media), offset(e.end, e.end_media), e.predictions,
                     levelWords(e.max_level, report.model.labels)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  if (!report.episodes.length) {
    const tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = 5; td.textContent = "None."; tr.appendChild(td); tbody.appendChild(tr);
  }
  document.body.dataset.loaded = "1";
}

// Several streams: one line each (source, start, end and why it ended) with its totals.
function renderStreams() {
  const box = document.getElementById("streams");
  if (!several()) return;
  box.hidden = false;
  const clock = t => (t ? new Date(t * 1000).toISOString().slice(11, 19) : "-");
  for (const st of report.streams) {
    const row = document.createElement("div");
    row.className = "stream-total"; row.dataset.stream = st.stream;
    const name = document.createElement("span"); name.className = "stream-name";
    name.textContent = `${st.stream}${st.source ? ` (${st.source})` : ""}: ${clock(st.started)} to ${clock(st.ended)}` +
      `${st.end_reason ? `, ${st.end_reason}` : ""}; ${(st.students || []).length} students`;
    const totals = document.createElement("div"); totals.className = "totals";
    renderTotals(totals, st.totals, report.model.labels);
    row.append(name, totals);
    box.querySelector(".stream-totals").appendChild(row);
  }
}

// The lesson as a whole (/api/sessions/<id>/lesson): the class line and the alerts, drawn on
// the strips as a frame around each run that lasted the alert time.
function renderLesson(doc) {
  const line = doc.class_line;
  if (line.length) {
    document.getElementById("class").hidden = false;
    classLine(document.getElementById("class-line"), line, 0, line[line.length - 1][0], report.model.labels);
    legend(document.getElementById("class-legend"), report.model.labels);
    const mean = [0, 1, 2, 3].map(i => line.reduce((a, p) => a + p[1 + i], 0) / line.length);
    document.getElementById("class-summary").textContent = `Over the lesson: ${shareWords([0, ...mean], report.model.labels)}.`;
  }
  document.getElementById("alerts-hint").textContent =
    `Students at level 2 or more for ${formatDuration(doc.attention_alert_seconds)} or longer.`;
  const tbody = document.querySelector("#alerts tbody");
  for (const a of doc.alerts) {
    const tr = document.createElement("tr");
    tr.dataset.student = a.student;
    for (const v of [named(a.stream, a.student, a.name), clock(a.start_offset ?? 0), formatDuration(a.seconds),
                     levelWords(a.worst_level, report.model.labels)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    tbody.appendChild(tr);
    if (chart) drawAlert(a);
  }
  if (!doc.alerts.length) {
    const tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = 4; td.textContent = "None."; tr.appendChild(td); tbody.appendChild(tr);
  }
  document.body.dataset.lesson = "1";
}

function drawAlert(a) {
  const y = chart.rowY(keyOf(a.stream, a.student));
  if (y === null) return;
  const [from, to] = mediaTime ? [a.start_offset, a.end_offset] : [a.start, a.end];
  const frame = svgEl("rect", { x: chart.x(from).toFixed(1), y: (y - 8).toFixed(1), height: 16,
                                width: Math.max(2, chart.x(to) - chart.x(from)).toFixed(1), class: "alert-span" });
  const title = svgEl("title");
  title.textContent = `needs attention: level 2 or more for ${formatDuration(a.seconds)}`;
  frame.appendChild(title);
  chart.svg.appendChild(frame);
}

let markOpener = null;  // where the focus goes back to once the mark box closes
function closeMarkBox() {
  document.getElementById("mark-box").hidden = true;
  if (markOpener) markOpener.focus();
}

// Keyboard marking: a student and a moment typed in, the nearest prediction of theirs picked.
function setUpMarkForm(rows) {
  const form = document.getElementById("mark-form"), select = document.getElementById("mark-student");
  for (const r of rows) {
    const o = document.createElement("option"); o.value = r.student; o.textContent = r.label; select.appendChild(o);
  }
  form.hidden = false;
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const row = rows.find(r => r.student === select.value);
    const parts = document.getElementById("mark-at").value.split(":").map(Number);
    const at = parts.reduce((a, b) => a * 60 + b, 0);
    if (!row || parts.some(Number.isNaN)) { toast("type the moment as mm:ss"); return; }
    const t = (mediaTime ? 0 : report.started || 0) + at;
    const near = row.entries.reduce((best, e) => (best && Math.abs(best.t - t) <= Math.abs(e.t - t) ? best : e), null);
    markOpener = form.querySelector("button");
    pick(row.student, near.capture ?? near.t, near.media);
  });
}

document.getElementById("mark-box").addEventListener("keydown", ev => {
  if (ev.key === "Escape") { ev.preventDefault(); closeMarkBox(); return; }
  const button = document.querySelector(`#mark-levels button[data-level="${ev.key}"]`);
  if (button && !ev.altKey && !ev.ctrlKey && !ev.metaKey) { ev.preventDefault(); button.click(); }
});
document.getElementById("mark-cancel").addEventListener("click", closeMarkBox);
fetch(`/api/sessions/${encodeURIComponent(session)}`, { cache: "no-store" })
  .then(r => r.json()).then(doc => { report = doc; render(); loadMarks(); return loadLesson(); });

async function loadLesson() {
  const r = await fetch(`/api/sessions/${encodeURIComponent(session)}/lesson`, { cache: "no-store" });
  if (r.ok) renderLesson(await r.json());
}
