// plantstream board: live updates (server-sent events), command forms without a page reload,
// and the sensor trends around an alert plotted with uPlot (vendored: static/uPlot.iife.min.js,
// MIT, see static/uPlot.LICENSE; `make board-vendor` re-fetches it) from /api/trend JSON.
// Data is only ever put into the page with textContent, never as HTML.
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

// Times on the board are UTC everywhere, so the chart's are too (uPlot defaults to local time).
const hhmm = (ts) => new Date(ts * 1e3).toISOString().slice(11, 16);
const hhmmss = (ts) => new Date(ts * 1e3).toISOString().slice(11, 19) + " UTC";

// The alert's episode (first to last seen) shaded behind the lines, and the limits as dashed lines.
function episodeAndLimits(data, limits) {
  const shade = (u) => {
    const x0 = u.valToPos(data.first_seen / 1e3, "x", true), x1 = u.valToPos(data.last_seen / 1e3, "x", true);
    const {top, height} = u.bbox;
    u.ctx.save();
    u.ctx.fillStyle = "rgba(209, 36, 47, 0.10)";
    u.ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
    u.ctx.restore();
  };
  const dashes = (u) => {
    const {left, width} = u.bbox;
    u.ctx.save();
    u.ctx.strokeStyle = "#d1242f"; u.ctx.fillStyle = "#d1242f";
    u.ctx.lineWidth = 1.5 * uPlot.pxRatio; u.ctx.setLineDash([6 * uPlot.pxRatio, 4 * uPlot.pxRatio]);
    u.ctx.font = (11 * uPlot.pxRatio) + "px system-ui, sans-serif";
    limits.forEach(([name, v]) => {
      const y = u.valToPos(v, "y", true);
      u.ctx.beginPath(); u.ctx.moveTo(left, y); u.ctx.lineTo(left + width, y); u.ctx.stroke();
      u.ctx.fillText(name + " limit " + v, left + 4 * uPlot.pxRatio, y - 3 * uPlot.pxRatio);
    });
    u.ctx.restore();
  };
  return {drawClear: [shade], draw: [dashes]};
}

// One uPlot chart per sensor: the bucket mean as the line, min to max as a band around it.
function trendChart(root, data, s, color, limits) {
  const xs = s.points.map((p) => p[0] / 1e3);
  const cols = [xs, s.points.map((p) => p[1]), s.points.map((p) => p[2]), s.points.map((p) => p[3])];
  const values = limits.map(([, v]) => v);
  const box = document.createElement("div");
  box.className = "trend-chart";
  root.appendChild(box);
  const opts = {
    title: s.sensor + " (" + s.unit + ")",
    width: Math.max(280, root.clientWidth || 900), height: 200,
    scales: {
      x: {time: true, range: () => [data.start / 1e3, data.end / 1e3]},
      y: {range: (u, lo, hi) => {
        lo = Math.min(lo, ...values); hi = Math.max(hi, ...values);
        const pad = (hi - lo) * 0.06 || 1;
        return [lo - pad, hi + pad];
      }},
    },
    series: [
      {label: "time", value: (u, v) => (v == null ? "" : hhmmss(v))},
      {label: "mean", stroke: color, width: 1.6},
      {label: "min", stroke: color + "66", width: 0.5},
      {label: "max", stroke: color + "66", width: 0.5},
    ],
    bands: [{series: [3, 2], fill: color + "2e"}],
    axes: [{label: "UTC", labelSize: 16, values: (u, splits) => splits.map(hhmm)}, {size: 60}],
    legend: {live: true},
    hooks: episodeAndLimits(data, limits),
  };
  return new uPlot(opts, cols, box);
}

function drawTrend(root, data) {
  const series = data.series;
  const legend = document.getElementById("trend-legend");
  root.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
  if (!series.length) {
    root.hidden = true;
    legend.textContent = "No readings of these sensors in the archive around the alert.";
    return;
  }
  // Limits belong to the alert's sensor: drawn only when the trend shows that one sensor.
  const limits = series.length === 1 ? Object.entries(data.limits) : [];
  const charts = series.map((s, i) => trendChart(root, data, s, COLORS[i % COLORS.length], limits));
  window.addEventListener("resize", () => {
    const w = Math.max(280, root.clientWidth || 900);
    charts.forEach((c) => c.setSize({width: w, height: 200}));
  });
  root.dataset.charts = String(charts.length);
  legend.textContent = "Line: mean per " + Math.round((data.end - data.start) / 300 / 1000) + " s bucket; band: min to max; "
    + "shaded: the alert's episode (first to last seen)" + (limits.length ? "; dashed: limit" : "") + ".";
}

async function loadTrend() {
  const root = document.getElementById("trend");
  if (!root) return;
  try {
    if (!window.uPlot) throw new Error("the chart library did not load");
    const resp = await fetch(root.dataset.src, {credentials: "same-origin"});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || resp.status);
    drawTrend(root, data);
  } catch (err) {
    root.dataset.points = "0";
    document.getElementById("trend-legend").textContent = "The trend could not be loaded: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => { startLive(); wireCommands(); loadTrend(); });
