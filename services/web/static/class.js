// The class page: each lesson's class line, drawn from /api/classes/<id> (the table is the
// server's HTML already).
"use strict";
const classId = document.body.dataset.class;

fetch(`/api/classes/${encodeURIComponent(classId)}`, { cache: "no-store" })
  .then(r => r.json())
  .then(doc => {
    if (doc.lessons.length) legend(document.getElementById("legend"), doc.lessons[doc.lessons.length - 1].labels);
    for (const lesson of doc.lessons) {
      const fig = [...document.querySelectorAll("#lines figure")].find(f => f.dataset.session === lesson.session);
      const line = lesson.class_line;
      if (!fig || !line.length) continue;
      classLine(fig.querySelector("svg"), line, 0, line[line.length - 1][0], lesson.labels);
    }
    document.body.dataset.loaded = "1";
  });
