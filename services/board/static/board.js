// plantstream board: live updates (server-sent events), command forms without a page reload,
// and the sensor trend drawn on a <canvas> from /api/trend JSON. Data is only ever put into
// the page with textContent, never as HTML.
"use strict";

const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0a7ea4"];

function setBadge(el, kind, value) {
  if (!el) return;
  el.textContent = value;
  el.className = "badge " + kind + "-" + value;
}

function setField(root, name, value) {
  root.querySelectorAll('[data-field="' + name + '"]').forEach((el) => {
    if (name === "state") setBadge(el, "state", value);
    else if (name === "severity") setBadge(el, "sev", value);
    else el.textContent = value;
  });
}

function applyRevision(root, a) {
  setField(root, "state", a.state);
  setField(root, "severity", a.severity);
  setField(root, "title", a.title);
  setField(root, "revision", String(a.revision));
  setField(root, "shelved", a.shelved_until && a.state !== "resolved" ? "shelved until " + a.shelved_until : "");
  root.classList.add("flash");
  setTimeout(() => root.classList.remove("flash"), 1500);
}

function onListAlert(a) {
  const row = Array.from(document.querySelectorAll("tr[data-alert-id]")).find((r) => r.dataset.alertId === a.alert_id);
  if (row) {
    if (Number(row.querySelector('[data-field="revision"]').textContent) < a.revision) applyRevision(row, a);
  } else {
    document.getElementById("new-alerts").hidden = false;
  }
}

function onAlertPage(a) {
  const art = document.querySelector("article.alert");
  if (!art || art.dataset.alertId !== a.alert_id) return;
  const rev = Number(art.querySelector('[data-field="revision"]').textContent);
  if (a.revision <= rev) return;
  applyRevision(art, a);
  const tr = document.createElement("tr");
  [String(a.revision), a.updated, a.state, a.severity, String(a.occurrences), a.actor || "", a.note || ""]
    .forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
  document.getElementById("history").appendChild(tr);
  document.querySelectorAll("form.command").forEach((f) => {
    f.hidden = !f.dataset.allowedIn.split(" ").includes(a.state);
  });
  const note = document.getElementById("command-result");
  if (note && !note.hidden) note.textContent = "Now " + a.state + (a.actor ? " (by " + a.actor + ")" : "") + ".";
}

function startLive() {
  const status = document.getElementById("live");
  if (!status || !window.EventSource) return;
  const page = document.body.dataset.page;
  const es = new EventSource("/events");
  const show = (state, text) => { status.dataset.state = state; status.textContent = text; };
  es.addEventListener("ready", () => show("live", "live"));
  es.addEventListener("error", () => show("down", "reconnecting…"));
  es.addEventListener("reload", () => window.location.reload());
  es.addEventListener("alert", (ev) => {
    const a = JSON.parse(ev.data);
    if (page === "alerts") onListAlert(a);
    else if (page === "alert") onAlertPage(a);
  });
}

function wireCommands() {
  document.querySelectorAll("form.command").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const note = document.getElementById("command-result");
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const resp = await fetch(form.getAttribute("action"), {
          method: "POST", credentials: "same-origin",
          headers: {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
          body: new URLSearchParams(new FormData(form)).toString(),
        });
        const answer = await resp.json();
        note.textContent = answer.message;
        note.dataset.ok = String(answer.ok);
      } catch (err) {
        note.textContent = "Could not send: " + err;
        note.dataset.ok = "false";
      } finally {
        note.hidden = false;
        button.disabled = false;
      }
    });
  });
}

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toISOString().slice(11, 16);
}

function drawTrend(canvas, data) {
  const series = data.series;
  const legend = document.getElementById("trend-legend");
  canvas.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
  if (!series.length) {
    canvas.hidden = true;
    legend.textContent = "No readings of these sensors in the archive around the alert.";
    return;
  }
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 900;
  const panelH = 150, pad = {l: 56, r: 12, t: 18, b: 22};
  const cssH = panelH * series.length;
  canvas.style.height = cssH + "px";
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.font = "12px system-ui, sans-serif";
  const x0 = data.start, x1 = data.end;
  const X = (t) => pad.l + (t - x0) / Math.max(1, x1 - x0) * (cssW - pad.l - pad.r);
  legend.textContent = "";
  series.forEach((s, i) => {
    const top = i * panelH;
    let lo = Math.min(...s.points.map((p) => p[2])), hi = Math.max(...s.points.map((p) => p[3]));
    Object.values(data.limits).forEach((v) => { if (series.length === 1) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    if (hi === lo) { hi += 1; lo -= 1; }
    const span = hi - lo; lo -= span * 0.05; hi += span * 0.05;
    const Y = (v) => top + pad.t + (hi - v) / (hi - lo) * (panelH - pad.t - pad.b);
    ctx.fillStyle = "rgba(209, 36, 47, 0.08)";
    ctx.fillRect(X(data.first_seen), top + pad.t, Math.max(2, X(data.last_seen) - X(data.first_seen)), panelH - pad.t - pad.b);
    ctx.strokeStyle = "#d0d7de"; ctx.lineWidth = 1;
    ctx.strokeRect(pad.l, top + pad.t, cssW - pad.l - pad.r, panelH - pad.t - pad.b);
    const color = COLORS[i % COLORS.length];
    ctx.fillStyle = color + "33";
    ctx.beginPath();
    s.points.forEach((p, j) => { j ? ctx.lineTo(X(p[0]), Y(p[3])) : ctx.moveTo(X(p[0]), Y(p[3])); });
    for (let j = s.points.length - 1; j >= 0; j--) ctx.lineTo(X(s.points[j][0]), Y(s.points[j][2]));
    ctx.closePath(); ctx.fill();
    ctx.strokeStyle = color; ctx.lineWidth = 1.6; ctx.beginPath();
    s.points.forEach((p, j) => { j ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1])); });
    ctx.stroke();
    if (series.length === 1) {
      Object.entries(data.limits).forEach(([name, v]) => {
        ctx.strokeStyle = "#d1242f"; ctx.setLineDash([5, 4]); ctx.beginPath();
        ctx.moveTo(pad.l, Y(v)); ctx.lineTo(cssW - pad.r, Y(v)); ctx.stroke(); ctx.setLineDash([]);
        ctx.fillStyle = "#d1242f"; ctx.fillText(name + " " + v, pad.l + 4, Y(v) - 3);
      });
    }
    ctx.fillStyle = "#57606a";
    ctx.fillText(hi.toPrecision(4), 4, top + pad.t + 10);
    ctx.fillText(lo.toPrecision(4), 4, top + panelH - pad.b);
    ctx.fillText(fmtTime(x0), pad.l, top + panelH - 6);
    ctx.fillText(fmtTime((x0 + x1) / 2), (pad.l + cssW - pad.r) / 2 - 14, top + panelH - 6);
    ctx.fillText(fmtTime(x1) + " UTC", cssW - pad.r - 64, top + panelH - 6);
    ctx.fillStyle = color;
    ctx.fillText(s.sensor + " (" + s.unit + ")", pad.l + 4, top + pad.t - 5);
  });
  legend.textContent = "Line: mean per " + Math.round((x1 - x0) / 300 / 1000) + " s bucket; band: min to max; "
    + "shaded: the alert's episode (first to last seen)" + (series.length === 1 && Object.keys(data.limits).length ? "; dashed: limit" : "") + ".";
}

async function loadTrend() {
  const canvas = document.getElementById("trend");
  if (!canvas) return;
  try {
    const resp = await fetch(canvas.dataset.src, {credentials: "same-origin"});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || resp.status);
    drawTrend(canvas, data);
  } catch (err) {
    canvas.dataset.points = "0";
    document.getElementById("trend-legend").textContent = "The trend could not be loaded: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => { startLive(); wireCommands(); loadTrend(); });
