// The dashboard (/dashboard): the list of jobs, the queue and its workers, starting a job;
// the schedules panel (schedules.js) refreshes with it.
"use strict";
const PAGE_SIZE = 25;
const TIMEFRAME = "5m"; // the one offered first, when the catalogue has it
let offset = 0;
let catalog = null;

function showError(text) { $("error").textContent = text || ""; }

function actionButton(td, label, handler) {
  const button = el("button", { type: "button" }, label);
  button.addEventListener("click", async () => {
    try { await handler(); showError(""); await refresh(); } catch (e) { showError(e.message); }
  });
  td.appendChild(button);
}

function outcome(job) {
  if (job.status === "succeeded") return job.best_score === null ? "saved" : "best " + num(job.best_score);
  if (job.status === "failed") return job.error ? job.error.type : "failed";
  if (job.status === "canceled") return "canceled";
  return null;
}

// The selects, filled once from the API's catalogue (the HTML holds no option lists).
function fillChoices() {
  const start = $("start").elements, filters = $("filters").elements;
  const strategies = catalog.strategies.map((s) => s.name);
  fillSelect(start.strategy, strategies);
  fillSelect(start.timeframe, catalog.timeframes, TIMEFRAME);
  fillSelect(start.priority, catalog.priorities, catalog.defaults.priority);
  fillSelect(filters.status, catalog.job_statuses.map((s) => s.value), "", "all");
  fillSelect(filters.strategy, strategies, "", "all");
  fillScheduleChoices(catalog, TIMEFRAME);
}

function render(page) {
  const body = $("jobs");
  body.replaceChildren();
  for (const job of page.items) {
    const row = body.insertRow();
    row.dataset.jobId = job.job_id;
    row.dataset.status = job.status;
    const id = row.insertCell();
    id.className = "id";
    id.append(el("a", { href: "/dashboard/jobs/" + encodeURIComponent(job.job_id), title: job.job_id },
                 job.job_id.slice(0, 8)));
    cell(row, statusText(job), "status-" + job.status);
    cell(row, job.strategy ?? job.kind);
    cell(row, job.symbol);
    cell(row, job.timeframe);
    cell(row, outcome(job));
    const progress = row.insertCell();
    progress.append(el("progress", { max: 100, value: job.percent }), " " + job.percent.toFixed(0) + "%");
    cell(row, job.phase);
    cell(row, duration(job.duration_s));
    cell(row, job.attempts);
    cell(row, when(job.created_at));
    const actions = row.insertCell();
    const allows = statusInfo(catalog, job.status);
    if (allows.cancelable) {
      actionButton(actions, "Cancel", () => api("DELETE", "/api/v2/training/jobs/" + job.job_id));
    } else if (allows.retryable) {
      actionButton(actions, "Retry", () => api("POST", "/api/v2/training/jobs/" + job.job_id + "/retry"));
    }
    if (job.error) row.title = job.error.type + ": " + job.error.message;
  }
  const last = Math.min(page.offset + page.items.length, page.total);
  $("range").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no jobs";
  $("prev").disabled = page.offset === 0;
  $("next").disabled = last >= page.total;
}

function renderQueue(queue) {
  $("queue").textContent = `queued ${queue.queued} · running ${queue.running} · failed ${queue.failed}` +
    ` · workers ${queue.workers}` + (queue.redis_ok ? "" : " · Redis unavailable");
  $("workers").replaceChildren(...(queue.worker_list || []).map((w) => {
    const item = el("li", { dataset: { worker: w.name } }, w.name + " " + (w.state || "?"));
    if (w.job_id) {
      item.append(" → ", el("a", { href: "/dashboard/jobs/" + encodeURIComponent(w.job_id), className: "mono" },
                             w.job_id.slice(0, 8)), " (attempt " + w.attempt + ")");
    }
    return item;
  }));
}

function listPath() {
  const filters = new FormData($("filters"));
  const query = new URLSearchParams({ limit: PAGE_SIZE, offset });
  for (const key of ["status", "strategy"]) if (filters.get(key)) query.set(key, filters.get(key));
  return "/api/v2/training/jobs?" + query;
}

async function refresh() {
  try {
    if (!catalog) {
      const loaded = await loadCatalog();
      if (!catalog) {
        catalog = loaded;
        fillChoices();
      }
    }
    const [page, queue] = await Promise.all([
      api("GET", listPath()), api("GET", "/api/v2/training/queue"), refreshSchedules(), refreshData(),
    ]);
    render(page);
    renderQueue(queue);
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value);
  refresh();
});

$("filters").addEventListener("change", () => { offset = 0; refresh(); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE_SIZE); refresh(); });
$("next").addEventListener("click", () => { offset += PAGE_SIZE; refresh(); });

$("start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = Object.fromEntries(form.entries());
  body.n_iterations = Number(body.n_iterations);
  body.seed = Number(body.seed);
  try { await api("POST", "/api/v2/training/start", body); showError(""); await refresh(); }
  catch (e) { showError(e.message); }
});

refresh();
setInterval(refresh, 2000);
