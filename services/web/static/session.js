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
const keyOf = (stream, id) => `${stream}/${id}`;

function offset(t) {
  const s = Math.max(0, t - (report.started || t));
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${(s % 60).toFixed(0).padStart(2, "0")}`;
}

function pick(key, t) {
  const cut = key.lastIndexOf("/");
  const stream = key.slice(0, cut), student = Number(key.slice(cut + 1));
  const box = document.getElementById("mark-box");
  document.getElementById("mark-what").textContent = `student ${who(stream, student)} at ${offset(t)}: you saw level`;
  const levels = document.getElementById("mark-levels");
  while (levels.firstChild) levels.removeChild(levels.firstChild);
  for (let l = 0; l < 4; l++) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = `${l} ${report.model.labels[l]}`;
    b.addEventListener("click", async () => {
      if (await postMark(session, student, t, l, stream, who(stream, student))) { box.hidden = true; loadMarks(); }
    });
    levels.appendChild(b);
  }
  box.hidden = false;
}

// Each mark as a dot on its student's strip, in the colour of the level the teacher gave.
function drawMarks(marks) {
  if (!chart) return;
  for (const old of chart.svg.querySelectorAll("circle.mark")) old.remove();
  for (const m of marks) {
    // A mark without a stream (a one-stream class, an older mark) sits on that id's row.
    const key = m.stream ? keyOf(m.stream, Number(m.student)) : rowKeys.find(k => k.endsWith(`/${m.student}`));
    const y = key === undefined ? null : chart.rowY(key);
    if (y === null) continue;
    const dot = svgEl("circle", { cx: chart.x(m.t).toFixed(1), cy: y.toFixed(1), r: 4, class: `mark l${m.level_given}` });
    const title = svgEl("title");
    title.textContent = `your mark at ${offset(m.t)}: ${m.level_given}; the model said ${m.level_predicted ?? "-"}`;
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
  document.getElementById("model-name").textContent = report.model.name || "-";
  document.getElementById("model-note").textContent = report.note || "";
  const when = report.started ? new Date(report.started * 1000).toISOString().replace("T", " ").slice(0, 19) : "-";
  document.getElementById("when").textContent =
    `Class ${report.class}, started ${when} UTC, ${report.totals.frames} frames, ${report.students.length} students` +
    (report.end_reason ? ` (ended: ${report.end_reason})` : "");
  renderTotals(document.getElementById("totals"), report.totals, report.model.labels);
  renderStreams();
  const t0 = report.started || 0;
  let t1 = Math.max(t0 + 1, report.ended || 0);
  for (const e of report.timeline) t1 = Math.max(t1, e.t_capture);
  for (const e of report.class_timeline) t1 = Math.max(t1, e.t_capture);
  let rows;
  if (report.timeline.length) {
    const by = new Map();
    for (const e of report.timeline) {
      const key = keyOf(e.stream, e.student);
      if (!by.has(key)) by.set(key, { stream: e.stream, id: e.student, entries: [] });
      by.get(key).entries.push({ t: e.t_capture, level: e.level });
    }
    rows = [...by.entries()]
      .sort(([, a], [, b]) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.id - b.id))
      .map(([key, r]) => ({ label: who(r.stream, r.id), student: key, entries: r.entries }));
    rowKeys = rows.map(r => r.student);
    chart = levelStrips(document.getElementById("timeline"), rows, t0, t1, pick, offset);
  } else {
    // Class level only: the worst level of the class per frame, no student named.
    rows = [{ label: "class", student: null, entries: report.class_timeline.map(r => ({
      t: r.t_capture, level: Math.max(...r.levels.map((n, i) => (n ? i : 0))) })) }];
    levelStrips(document.getElementById("timeline"), rows, t0, t1, null, offset);
    document.getElementById("chart-hint").textContent = "Class level only: the worst level of any student per frame.";
  }
  const tbody = document.querySelector("#episodes tbody");
  for (const e of report.episodes) {
    const tr = document.createElement("tr");
    for (const v of [who(e.stream, e.student), offset(e.start), offset(e.end), e.predictions,
                     `${e.max_level} ${report.model.labels[e.max_level]}`]) {
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

document.getElementById("mark-cancel").addEventListener("click", () => { document.getElementById("mark-box").hidden = true; });
fetch(`/api/sessions/${encodeURIComponent(session)}`, { cache: "no-store" })
  .then(r => r.json()).then(doc => { report = doc; render(); loadMarks(); });
