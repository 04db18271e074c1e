// The dashboard's schedules panel: the cron schedules with their next fire and latest jobs,
// pause and resume, and a form that creates one; all through /api/v2/training/schedules.
// dashboard.js calls refreshSchedules() with the rest of the page.
"use strict";
const SCHEDULES = "/api/v2/training/schedules";
const LATEST_FIRES = 3;
let scheduleGeneration = 0;

function showScheduleError(text) { $("schedule-error").textContent = text || ""; }

// The instant in the schedule's own timezone, for the cell's tooltip.
function localTime(value, zone) {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone, dateStyle: "medium", timeStyle: "medium" })
      .format(new Date(value)) + " " + zone;
  } catch (e) {
    return null;
  }
}

function timeCell(row, value, zone) {
  const td = cell(row, when(value));
  if (value) {
    td.dataset.time = value;
    td.title = localTime(value, zone);
  }
  return td;
}

// One fire: the job it started (linked, with its status) or what happened instead.
function fireItem(fire) {
  const title = "fired for " + when(fire.fire_time) + (fire.message ? ": " + fire.message : "");
  if (!fire.job_id && fire.refresh_job_id) {  // its candles refresh: running, or failed with nothing trained
    const status = fire.refresh_job_status || "?";
    return el("a", {
      href: "/dashboard/jobs/" + encodeURIComponent(fire.refresh_job_id),
      className: "mono status-" + status,
      title,
      dataset: { jobId: fire.refresh_job_id, status, outcome: fire.outcome },
    }, fire.outcome + " " + fire.refresh_job_id.slice(0, 8));
  }
  if (!fire.job_id) return el("span", { title, dataset: { outcome: fire.outcome } }, fire.outcome);
  const status = fire.job_status || "?";
  return el("a", {
    href: "/dashboard/jobs/" + encodeURIComponent(fire.job_id),
    className: "mono status-" + status,
    title,
    dataset: { jobId: fire.job_id, status, outcome: fire.outcome },
  }, fire.job_id.slice(0, 8) + " " + status);
}

function scheduleAction(td, label, path) {
  const button = el("button", { type: "button" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await api("POST", path); showScheduleError(""); } catch (e) { showScheduleError(e.message); }
    await refreshSchedules().catch((e) => showScheduleError(e.message));
  });
  td.appendChild(button);
}

function renderSchedules(schedules) {
  const body = $("schedules");
  body.replaceChildren();
  for (const s of schedules) {
    const row = body.insertRow();
    const state = s.paused ? "paused" : "active";
    row.dataset.scheduleId = s.id;
    row.dataset.state = state;
    row.title = "template: " + paramList(s.template) + " · misfire " + s.misfire_policy +
      " · overlap " + s.overlap_policy;
    cell(row, s.name);
    cell(row, s.cron, "mono");
    cell(row, s.timezone);
    cell(row, state, "state-" + state);
    timeCell(row, s.next_fire_at, s.timezone).classList.add("next-fire");
    timeCell(row, s.last_fired_at, s.timezone).classList.add("last-fire");
    const fires = row.insertCell();
    fires.className = "fires";
    const latest = s.recent_fires.slice(0, LATEST_FIRES);
    fires.append(...(latest.length ? latest.map(fireItem) : [DASH]));
    const verb = s.paused ? "resume" : "pause";
    scheduleAction(row.insertCell(), s.paused ? "Resume" : "Pause",
                   SCHEDULES + "/" + encodeURIComponent(s.id) + "/" + verb);
  }
  if (!schedules.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = 8;
    td.textContent = "no schedules";
  }
}

// The list, then each schedule's detail (its latest fires); a schedule deleted in between is left
// out. An older refresh that answers after a newer one does not overwrite it.
async function refreshSchedules() {
  const generation = ++scheduleGeneration;
  const page = await api("GET", SCHEDULES);
  const details = await Promise.all(page.items.map((s) =>
    api("GET", SCHEDULES + "/" + encodeURIComponent(s.id)).catch((e) => {
      if (e.status === 404) return null;
      throw e;
    })));
  if (generation === scheduleGeneration) renderSchedules(details.filter(Boolean));
}

function scheduleBody(form) {
  const f = Object.fromEntries(new FormData(form).entries());
  const template = {
    strategy: f.strategy,
    symbol: f.symbol.trim(),
    timeframe: f.timeframe,
    n_iterations: Number(f.n_iterations),
  };
  if (f.lookback.trim()) template.lookback = f.lookback.trim();
  // Refresh first: the exchange and its symbol, both or neither (the API says which is wrong).
  if (f.refresh_exchange.trim() || f.refresh_symbol.trim()) {
    template.refresh = { exchange: f.refresh_exchange.trim(), symbol: f.refresh_symbol.trim() };
  }
  return {
    name: f.name.trim(),
    cron: f.cron.trim(),
    timezone: f.timezone.trim(),
    template,
    misfire_policy: f.misfire_policy,
    overlap_policy: f.overlap_policy,
  };
}

$("schedule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("POST", SCHEDULES, scheduleBody(event.target));
    showScheduleError("");
    event.target.elements.name.value = "";
  } catch (e) {
    showScheduleError(e.message);
    return;
  }
  await refreshSchedules().catch((e) => showScheduleError(e.message));
});

// The form's choices, from the API's catalogue; the strategies and timeframes are the start form's.
function fillScheduleChoices(catalog, timeframe) {
  const form = $("schedule-form").elements;
  fillSelect(form.strategy, catalog.strategies.map((s) => s.name));
  fillSelect(form.timeframe, catalog.timeframes, timeframe);
  fillSelect(form.misfire_policy, catalog.misfire_policies, catalog.defaults.misfire_policy);
  fillSelect(form.overlap_policy, catalog.overlap_policies, catalog.defaults.overlap_policy);
}
if (Intl.supportedValuesOf) {
  $("timezones").replaceChildren(...Intl.supportedValuesOf("timeZone").map((zone) => el("option", { value: zone })));
}
