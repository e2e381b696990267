// The `orch report` page's script (inlined into the HTML by replay/src/report.rs): draws
// the Gantt on a canvas, only the rows in view, and renders the task table a page at a time.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const tasks = data.tasks, att = data.attempts, now = Math.max(data.now, 1);
  const ROW = 16, HEAD = 22, LABEL = 220;
  const styles = getComputedStyle(document.documentElement);
  const colours = data.outcomes.map(function (o) { return styles.getPropertyValue("--" + o).trim() || "#999"; });
  const crit = styles.getPropertyValue("--crit").trim();

  // Attempts grouped by row: offsets into `att` (4 numbers per attempt).
  const n = att.length / 4;
  const rowStart = new Uint32Array(tasks.length + 1);
  for (let i = 0; i < n; i++) rowStart[att[4 * i] + 1]++;
  for (let r = 0; r < tasks.length; r++) rowStart[r + 1] += rowStart[r];
  const byRow = new Uint32Array(n);
  const fill = rowStart.slice(0, tasks.length);
  for (let i = 0; i < n; i++) byRow[fill[att[4 * i]]++] = i;

  const box = document.getElementById("gantt"), canvas = document.getElementById("gantt-canvas");
  const space = document.getElementById("gantt-space"), tip = document.getElementById("tip");
  const ctx = canvas.getContext("2d");
  space.style.height = (tasks.length * ROW + HEAD) + "px";
  box.style.height = Math.min(Math.max(window.innerHeight * 0.6, 200), tasks.length * ROW + HEAD + 24) + "px";
  const zoomInput = document.getElementById("zoom"), panInput = document.getElementById("pan");
  let width = 0, height = 0, scale = 1, offset = 0;

  function fmt(ms) { return ms < 10000 ? ms + " ms" : (ms / 1000).toFixed(ms < 100000 ? 2 : 1) + " s"; }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    width = box.clientWidth; height = box.clientHeight;
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    space.style.marginTop = (-height) + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const zoom = Math.pow(2, Number(zoomInput.value));
    scale = (width - LABEL - 10) * zoom / now;
    offset = Number(panInput.value) / 1000 * (now - now / zoom);
    const top = box.scrollTop, first = Math.floor(top / ROW);
    const last = Math.min(tasks.length, Math.ceil((top + height) / ROW));
    ctx.font = "12px system-ui, sans-serif"; ctx.textBaseline = "middle";
    for (let r = first; r < last; r++) {
      const y = HEAD + r * ROW - top, t = tasks[r];
      if (y + ROW < HEAD) continue;
      if (t[6]) { ctx.fillStyle = "#fff4c2"; ctx.fillRect(0, y, width, ROW); }
      for (let k = rowStart[r]; k < rowStart[r + 1]; k++) {
        const i = byRow[k], x0 = LABEL + (att[4 * i + 1] - offset) * scale;
        const w = Math.max(1, (att[4 * i + 2] - att[4 * i + 1]) * scale);
        ctx.fillStyle = colours[att[4 * i + 3]];
        ctx.fillRect(x0, y + 2, w, ROW - 4);
        if (t[6]) { ctx.strokeStyle = crit; ctx.lineWidth = 1.5; ctx.strokeRect(x0, y + 1.5, w, ROW - 3); }
      }
      // The label column last: it covers bars scrolled off to the left.
      ctx.fillStyle = t[6] ? "#fff4c2" : "#fff"; ctx.fillRect(0, y, LABEL, ROW);
      ctx.fillStyle = t[6] ? crit : "#333";
      ctx.fillText(t[0], 4 + 10 * t[7], y + ROW / 2, LABEL - 8 - 10 * t[7]);
    }
    // Time axis.
    ctx.fillStyle = "#f0f0f0"; ctx.fillRect(0, 0, width, HEAD);
    ctx.fillStyle = "#444"; ctx.strokeStyle = "#ccc"; ctx.lineWidth = 1;
    const step = niceStep((width - LABEL) / scale / 8);
    for (let ms = Math.ceil(offset / step) * step; ms <= now; ms += step) {
      const x = LABEL + (ms - offset) * scale;
      if (x > width) break;
      ctx.beginPath(); ctx.moveTo(x, HEAD - 5); ctx.lineTo(x, height); ctx.stroke();
      ctx.fillText(fmt(ms), x + 2, HEAD / 2);
    }
    ctx.fillText(tasks.length + " tasks, " + n + " attempts", 4, HEAD / 2);
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
    return [1, 2, 5, 10].map(function (m) { return m * p; }).find(function (s) { return s >= raw; }) || p * 10;
  }

  function hit(ev) {
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left, y = ev.clientY - rect.top - HEAD + box.scrollTop;
    const r = Math.floor(y / ROW);
    if (y < 0 || r < 0 || r >= tasks.length) return null;
    const ms = (x - LABEL) / scale + offset;
    for (let k = rowStart[r]; k < rowStart[r + 1]; k++) {
      const i = byRow[k];
      if (ms >= att[4 * i + 1] - 2 / scale && ms <= att[4 * i + 2] + 2 / scale) return [r, i, k - rowStart[r] + 1];
    }
    return [r, -1, 0];
  }

  canvas.addEventListener("mousemove", function (ev) {
    const h = hit(ev);
    if (!h) { tip.hidden = true; return; }
    const t = tasks[h[0]];
    let text = t[0] + " — " + t[1] + (t[6] ? " (critical path)" : "");
    if (h[1] >= 0) {
      const i = h[1];
      text += "\nattempt " + h[2] + ": " + data.outcomes[att[4 * i + 3]] + ", " + att[4 * i + 1] + " → " +
        att[4 * i + 2] + " ms (" + (att[4 * i + 2] - att[4 * i + 1]) + " ms)";
    }
    tip.textContent = text; tip.hidden = false;
    tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px";
  });
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  let pending = false;
  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; draw(); }); }
  }
  box.addEventListener("scroll", schedule);
  window.addEventListener("resize", schedule);
  zoomInput.addEventListener("input", schedule);
  panInput.addEventListener("input", schedule);
  draw();

  // The task table: filter, sort by any column, one page at a time.
  const PAGE = 100, tbody = document.querySelector("#task-table tbody"), pager = document.getElementById("pager");
  const heads = document.querySelectorAll("#task-table th");
  let rows = tasks.map(function (_, i) { return i; }), view = rows, page = 0, sortCol = -1, asc = true;
  function cmp(a, b) {
    const x = tasks[a][sortCol], y = tasks[b][sortCol];
    if (x === y) return a - b;
    if (x === null) return 1;
    if (y === null) return -1;
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c;
  }
  function cell(tr, v, num) {
    const td = document.createElement("td");
    td.textContent = v === null ? "–" : String(v);
    if (num) td.className = "num";
    tr.appendChild(td);
  }
  function renderTable() {
    const pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(page, pages - 1);
    tbody.textContent = "";
    for (const r of view.slice(page * PAGE, page * PAGE + PAGE)) {
      const t = tasks[r], tr = document.createElement("tr");
      if (t[6]) tr.className = "crit";
      cell(tr, t[0]); cell(tr, t[1]); cell(tr, t[2], true); cell(tr, t[3], true);
      cell(tr, t[4], true); cell(tr, t[5], true); cell(tr, t[8], true);
      tbody.appendChild(tr);
    }
    pager.textContent = "";
    const info = document.createElement("span");
    info.textContent = view.length + " tasks · page " + (page + 1) + " of " + pages + " ";
    pager.appendChild(info);
    [["« first", 0], ["‹ prev", page - 1], ["next ›", page + 1], ["last »", pages - 1]].forEach(function (b) {
      const button = document.createElement("button");
      button.textContent = b[0];
      button.disabled = b[1] < 0 || b[1] >= pages || b[1] === page;
      button.addEventListener("click", function () { page = b[1]; renderTable(); });
      pager.appendChild(button);
    });
  }
  heads.forEach(function (th) {
    th.addEventListener("click", function () {
      const col = Number(th.dataset.col);
      asc = sortCol === col ? !asc : true; sortCol = col;
      heads.forEach(function (h) { h.className = ""; });
      th.className = asc ? "asc" : "desc";
      rows.sort(cmp); applyFilter();
    });
  });
  function applyFilter() {
    const q = document.getElementById("filter").value.trim().toLowerCase();
    view = q ? rows.filter(function (r) {
      return tasks[r][0].toLowerCase().includes(q) || tasks[r][1].includes(q);
    }) : rows;
    renderTable();
  }
  document.getElementById("filter").addEventListener("input", function () { page = 0; applyFilter(); });
  renderTable();
})();
