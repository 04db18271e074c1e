// The job page (/dashboard/jobs/{id}): a job's status, attempts and, once trained, its results.
"use strict";
const JOB_ID = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const JOB = "/api/v2/training/jobs/" + encodeURIComponent(JOB_ID);
const TRADES_SHOWN = 100;
// What the page shows, kept for whoever looks (and for the browser tests).
const page = window.tradPage = { job: null, configuration: null, trials: [], charts: {} };

const HINTS = {
  JobInputError: "The job cannot be trained as asked: data missing or too short for the range and timeframe, " +
    "or bad parameters. Check the candles with `trad candles list`, import data or pick another range or " +
    "timeframe, then start a new job.",
  NoViableConfiguration: "No parameter set met the minimum number of trades or gave a defined score. Try a " +
    "longer range, a shorter timeframe, a lower min_trades or another strategy.",
  StrategyUnavailable: "A worker that took the job lacks its strategy or has another version of it. Deploy " +
    "the same strategy packages (STRATEGY_PACKAGES) to the primary and every worker host, check with " +
    "`trad strategies list`, then start a new job.",
  StrategyError: "The strategy's own code raised. Its message names the error; fix the package, check it " +
    "with `trad strategies check`, deploy it and start a new job.",
  InvalidPositions: "The strategy returned positions that are not -1, 0 or 1 for every bar (NaN included). " +
    "Fix the package, check it with `trad strategies check`, deploy it and start a new job.",
  LookaheadBias: "The strategy's positions changed when only later bars changed: it reads data after the bar " +
    "it decides on (shift(-1), a centred window, a normalisation or fit over the whole series), so its results " +
    "would look better than any live run. Nothing was saved. Fix the strategy so each position uses its bar and " +
    "earlier ones only, check it with `trad strategies check NAME --symbol … --timeframe …`, deploy it, then " +
    "start a new job.",
  WarmupTooShort: "The strategy's positions changed when more history was put in front of them: its indicators " +
    "need more bars than the warm-up it declares (a recursive indicator such as an EMA, or a window longer than " +
    "the warm-up). Nothing was saved. Declare at least the warm-up the message names, check it with " +
    "`trad strategies check NAME --symbol … --timeframe …`, deploy it, then start a new job.",
  WorkerLost: "The worker running it stopped heartbeating (killed, crashed, or the machine restarted) on its " +
    "last attempt. Check `journalctl -u 'trad-worker@*'` around the finish time, then Retry.",
  AttemptTimeout: "It ran past the hard timeout for its kind. Use fewer iterations or a shorter range, or raise " +
    "TRAINING_TIMEOUT_S, then start it again.",
  Stalled: "It reported no progress for the stall timeout. Look in the worker's log for where it hung " +
    "(search for the job id), then Retry.",
  OperationalError: "PostgreSQL was unreachable for longer than the outage budget. Check " +
    "`systemctl status postgresql`, then Retry.",
  RedisError: "Redis was unreachable. Check `systemctl status redis-server`, then Retry.",
};
const DEFAULT_HINT = "An unexpected error. The worker's log has the traceback (search for the job id); " +
  "Retry once the cause is fixed.";

function showError(text) { $("error").textContent = text || ""; }

function setText(id, value) { $(id).textContent = value === null || value === undefined ? DASH : String(value); }

function table(id, headers, rows) {
  const node = $(id);
  const head = el("thead", {}, el("tr", {}, ...headers.map((h) =>
    el("th", { className: h.num ? "num" : "" }, h.label ?? h))));
  node.replaceChildren(head, el("tbody", {}, ...rows));
}

// A number cell: formatted for people, the API's own value kept in data-value.
function numCell(value, text, extra) {
  const props = { className: "num", dataset: { value: value === null || value === undefined ? "" : String(value) } };
  if (extra) Object.assign(props.dataset, extra);
  return el("td", props, text);
}

// ---- status, attempts, failure -------------------------------------------------------------

function renderStatus(job) {
  $("status").className = "status-" + job.status;
  setText("status", statusText(job));
  setText("phase", job.phase);
  $("bar").value = job.percent;
  setText("percent", job.percent.toFixed(1) + " %");
  setText("iteration", job.iteration === null ? null : job.iteration + " / " + (job.n_iterations ?? "?"));
  renderScore(job);
  setText("eta", job.eta_seconds === null ? null : duration(job.eta_seconds));
  setText("attempts-count", job.attempts);
  setText("created", when(job.created_at));
  setText("started", when(job.started_at));
  setText("finished", when(job.finished_at));
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  setText("duration", job.started_at ? duration((end - new Date(job.started_at)) / 1000) : null);
  setText("message", job.message);
  document.title = "trad · " + job.status + " · " + JOB_ID.slice(0, 8);

  const actions = $("actions");
  actions.replaceChildren();
  const act = (label, method, path) => {
    const button = el("button", { type: "button" }, label);
    button.addEventListener("click", async () => {
      try { await api(method, path); showError(""); await load(); } catch (e) { showError(e.message); }
    });
    actions.append(button);
  };
  const allows = statusInfo(catalog, job.status);
  if (allows.cancelable) act("Cancel", "DELETE", JOB);
  if (allows.retryable) act("Retry", "POST", JOB + "/retry");

  const failed = job.status === "failed" && job.error;
  $("failure").hidden = !failed;
  if (failed) {
    setText("error-type", job.error.type);
    setText("error-message", job.error.message);
    setText("error-hint", HINTS[job.error.type] || DEFAULT_HINT);
  }
}

// The headline score: the saved configuration's own (its out-of-sample score) once there is one,
// never the best training trial's beside it.
function renderScore(job) {
  const cfg = page.configuration;
  setText("best-label", cfg ? "Out-of-sample score" : "Best training score");
  setText("best", num(cfg ? cfg.score : job.best_score));
}

function renderHeader(job) {
  const p = job.params || {};
  setText("title", JOB_ID);
  setText("subtitle", job.kind === "training"
    ? [p.strategy_version ? p.strategy + " " + p.strategy_version : p.strategy, p.symbol, p.timeframe, (p.n_iterations ?? "?") + " trials", "seed " + p.seed,
       p.objective ? "objective " + p.objective : null, "priority " + job.priority].filter(Boolean).join(" · ")
    : job.kind + " · priority " + job.priority);
}

function renderAttempts(job) {
  table("attempts", ["#", "Status", "Worker", "From trial", "Started", "Finished", "Error"],
    job.attempt_history.map((a) => el("tr", { dataset: { attempt: a.number } },
      el("td", {}, a.number), el("td", { className: "status-" + a.status }, a.status), el("td", {}, a.worker_name ?? DASH),
      el("td", {}, a.start_iteration), el("td", {}, when(a.started_at)), el("td", {}, when(a.finished_at)),
      el("td", { className: "wrap" }, a.error_type ? a.error_type + ": " + (a.error_message ?? "") : DASH))));
}

async function loadHistory() {
  const first = await api("GET", JOB + "/progress/history?limit=1");
  const shown = 50, offset = Math.max(0, first.total - shown);
  const data = first.total ? await api("GET", JOB + "/progress/history?limit=" + shown + "&offset=" + offset) : first;
  setText("history-summary", "Progress history (" + first.total + (first.total === 1 ? " report" : " reports") +
    (first.total > shown ? ", last " + shown + " shown" : "") + ")");
  table("history", ["Time", "Attempt", "Phase", { label: "%", num: true }, "Iteration", "Best", "Message"],
    data.items.map((e) => el("tr", {}, el("td", {}, when(e.created_at)), el("td", {}, e.attempt ?? DASH),
      el("td", {}, e.phase), numCell(e.percent, num(e.percent, 1)), el("td", {}, e.iteration ?? DASH),
      numCell(e.best_score, num(e.best_score)), el("td", { className: "wrap" }, e.message ?? DASH))));
}

// ---- results of a succeeded training job ---------------------------------------------------

// The contract's fields are top-level on the configuration; older configurations keep a
// holdout-only curve in `details` as [[ms, equity], …].
function field(cfg, name) { return cfg[name] ?? (cfg.details || {})[name] ?? null; }

function equityData(cfg) {
  const curve = field(cfg, "equity_curve");
  if (!curve) return null;
  if (Array.isArray(curve)) {
    return { time: curve.map((p) => p[0]), strategy: curve.map((p) => p[1]), benchmark: null, legacy: true };
  }
  if (!Array.isArray(curve.time) || !curve.time.length) return null;
  return { time: curve.time, strategy: curve.strategy, benchmark: curve.benchmark || null, legacy: false };
}

const COMPACT = new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 4 });
const compactTicks = (u, values) => values.map((v) => (v === null ? "" : COMPACT.format(v)));

function chartWidth(id) { return Math.max(280, $(id).clientWidth); }

function chartHeight() { return window.innerWidth < 600 ? 220 : 320; }

function makeChart(id, opts, data) {
  const chart = new uPlot({ width: chartWidth(id), height: chartHeight(), ...opts }, data, $(id));
  page.charts[id] = chart;
  return chart;
}

window.addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(page.charts)) chart.setSize({ width: chartWidth(id), height: chartHeight() });
});

function renderEquity(cfg) {
  const data = equityData(cfg);
  $("equity-panel").hidden = !data;
  if (!data) return;
  const boundary = field(cfg, "validation_start");
  const windows = field(cfg, "windows") || [];
  const series = [{}, { label: "strategy", stroke: "#175cd3", width: 2, value: (u, v) => num(v, 4) }];
  const columns = [data.time, data.strategy];
  if (data.benchmark) {
    series.push({ label: "buy & hold", stroke: "#98a2b3", width: 1.5, value: (u, v) => num(v, 4) });
    columns.push(data.benchmark);
  }
  const shade = (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    windows.forEach((w, i) => {
      const x0 = u.valToPos(w.out_of_sample_start, "x", true), x1 = u.valToPos(w.out_of_sample_end, "x", true);
      ctx.fillStyle = i % 2 ? "rgba(23, 92, 211, 0.06)" : "rgba(23, 92, 211, 0.12)";
      ctx.fillRect(x0, bbox.top, Math.max(1, x1 - x0), bbox.height);
    });
    ctx.restore();
  };
  const mark = (u) => {
    if (boundary === null) return;
    const { ctx, bbox } = u;
    const x = Math.round(u.valToPos(boundary, "x", true));
    ctx.save();
    ctx.strokeStyle = "#b54708"; ctx.lineWidth = 2 * devicePixelRatio; ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(x, bbox.top); ctx.lineTo(x, bbox.top + bbox.height); ctx.stroke();
    ctx.fillStyle = "#b54708"; ctx.font = 12 * devicePixelRatio + "px system-ui";
    ctx.textAlign = "right";
    ctx.fillText(windows.length ? "out of sample →" : "validation →", x - 4 * devicePixelRatio, bbox.top + 14 * devicePixelRatio);
    ctx.restore();
  };
  makeChart("equity-chart", {
    ms: 1, series, scales: { x: { time: true } },
    axes: [{}, { label: "equity (start = 1)", size: 60, values: compactTicks }],
    hooks: { drawClear: [shade], draw: [mark] },
  }, columns);
  const parts = [];
  parts.push(data.legacy ? "Validation period only (this configuration predates the full-range curve)."
                         : "Whole trained range, train then " + (windows.length ? "out of sample" : "validation") + ".");
  if (boundary !== null) parts.push("Dashed line: first " + (windows.length ? "out-of-sample" : "validation") + " bar, " + when(boundary) + ".");
  if (windows.length) parts.push("Shaded: the " + windows.length + " walk-forward out-of-sample windows.");
  if (!data.benchmark) parts.push("No buy-and-hold series in this result.");
  setText("equity-note", parts.join(" "));
}

async function loadTrials() {
  const items = [];
  for (let offset = 0; ; ) {
    const pageOfTrials = await api("GET", JOB + "/trials?limit=2000&offset=" + offset);
    items.push(...pageOfTrials.items);
    offset += pageOfTrials.items.length;
    if (!pageOfTrials.items.length || offset >= pageOfTrials.total) break;
  }
  return items;
}

function renderTrials(trials) {
  page.trials = trials;
  $("trials-panel").hidden = !trials.length;
  if (!trials.length) return;
  const numbers = trials.map((t) => t.number);
  const scores = trials.map((t) => (t.feasible ? t.score : null));
  // The best so far within each walk-forward window (each window is its own search).
  let best = null, window_ = null;
  const bestSoFar = trials.map((t, i) => {
    if ((t.window ?? 0) !== window_) { window_ = t.window ?? 0; best = null; }
    if (scores[i] !== null && (best === null || scores[i] > best)) best = scores[i];
    return best;
  });
  const windows = new Set(trials.map((t) => t.window ?? 0)).size;
  makeChart("trials-chart", {
    series: [
      { label: "trial" },
      { label: "score", stroke: "#175cd3", fill: "#175cd3", paths: () => null,
        points: { show: true, size: 5, fill: "#175cd3" }, value: (u, v) => num(v) },
      { label: "best so far", stroke: "#176f2c", width: 2, paths: uPlot.paths.stepped({ align: 1 }),
        points: { show: false }, value: (u, v) => num(v) },
    ],
    scales: { x: { time: false } },
    axes: [{ label: "trial" }, { label: "score", size: 60, values: compactTicks }],
  }, [numbers, scores, bestSoFar]);
  const infeasible = trials.filter((t) => !t.feasible).length;
  const timed = trials.filter((t) => t.duration_s !== null);
  setText("trials-note", trials.length + " trials" + (windows > 1 ? " over " + windows + " walk-forward windows" : "") +
    (infeasible ? ", " + infeasible + " infeasible (no score, not plotted)" : ", all feasible") +
    (timed.length ? ", mean " + duration(timed.reduce((a, t) => a + t.duration_s, 0) / timed.length) + " each" : "") + "." +
    (windows > 1 ? " The best so far starts again with each window." : ""));
}

const METRICS = [
  ["total_return", "Total return", pct], ["cagr", "CAGR", pct], ["sharpe", "Sharpe", (v) => num(v, 2)],
  ["max_drawdown", "Max drawdown", pct], ["calmar", "Calmar", (v) => num(v, 2)], ["win_rate", "Win rate", pct],
  ["n_trades", "Trades", (v) => (v ?? DASH)], ["exposure", "Exposure", pct], ["n_bars", "Bars", (v) => (v ?? DASH)],
];

function renderMetrics(cfg) {
  const bench = field(cfg, "benchmark_metrics");
  const columns = [["train", cfg.train_metrics || {}], ["validation", cfg.validation_metrics || {}]];
  if (bench) columns.push(["benchmark-train", bench.train || {}], ["benchmark-validation", bench.validation || {}]);
  const known = new Set([...METRICS.map((m) => m[0]), "null_reasons"]);
  const extra = [...new Set(columns.flatMap(([, m]) => Object.keys(m)))].filter((k) => !known.has(k))
    .map((k) => [k, k, (v) => (typeof v === "number" ? num(v) : v ?? DASH)]);
  const headers = ["Metric", { label: "Train", num: true }, { label: "Validation", num: true }];
  if (bench) headers.push({ label: "Buy & hold train", num: true }, { label: "Buy & hold validation", num: true });
  // An undefined figure shows why it is undefined (the engine's words), never a blank.
  const cell = (set, m, key, format) => {
    const value = m[key] ?? null;
    const reason = value === null ? (m.null_reasons || {})[key] : undefined;
    if (!reason) return numCell(value, format(value), { set });
    const td = numCell(null, reason, { set, reason });
    td.className = "num wrap meaning";
    return td;
  };
  table("metrics", headers, [...METRICS, ...extra].map(([key, label, format]) => el("tr", { dataset: { metric: key } },
    el("td", {}, label), ...columns.map(([set, m]) => cell(set, m, key, format)))));
  const short = columns.some(([, m]) => m.cagr === null && /^not annualised/.test((m.null_reasons || {}).cagr || ""));
  const from = field(cfg, "validation_start"), to = field(cfg, "data_end");
  const days = from !== null && to !== null ? (Date.parse(to) - from) / 86400000 : null;
  setText("metrics-note", short
    ? "CAGR and Calmar are yearly figures, given only over 90 days or more: compounded to a year, a few days' " +
      "return would read as a large yearly one. Total return is what happened."
    : days !== null && days < 365
      ? "CAGR and Calmar annualise: over a validation range of " + (days < 2 ? days.toFixed(1) : Math.round(days)) +
        " days a small return becomes a large yearly figure. Total return is what happened."
      : "");
}

function renderStatistics(cfg) {
  const stats = field(cfg, "statistics");
  const overfit = stats ? stats.overfit : cfg.overfit;
  const reason = stats ? stats.reason : cfg.overfit_reason;
  const verdict = stats && stats.verdict
    ? stats.verdict
    : overfit ? "Overfitting suspected" + (reason ? ": " + reason : ".")
              : "No overfitting detected by the validation check.";
  $("verdict").className = stats && stats.kind ? "kind-" + stats.kind : overfit ? "overfit" : "";
  setText("verdict", verdict);
  const excess = field(cfg, "excess");
  const nTrials = stats ? stats.n_trials : field(cfg, "n_trials");
  const mode = field(cfg, "validation_mode");
  const rows = [
    ["n_trials", "Parameter sets tried", nTrials, nTrials ?? DASH, "counted by the deflated Sharpe ratio"],
  ];
  if (mode) {
    rows.push(["validation_mode", "Validation", null, mode === "walk_forward" ? "walk-forward" : mode,
               mode === "walk_forward" ? "re-optimised on each in-sample window, scored on the next out-of-sample one"
                                       : "optimised on the training part, scored once on the held-out part"]);
  }
  const minTrades = field(cfg, "min_trades");
  if (minTrades !== null) {
    rows.push(["min_trades", "Minimum trades", minTrades, minTrades,
               "parameter sets with fewer training trades were not eligible"]);
  }
  for (const [key, label, meaning] of [
    ["fee_bps", "Fee per fill", "paid on each entry and exit, in basis points of the fill's notional"],
    ["slippage_bps", "Slippage per fill", "assumed on each entry and exit, in basis points of the fill's notional"],
  ]) {
    const bps = field(cfg, key);
    if (bps !== null) rows.push([key, label, bps, num(bps, 2) + " bps (" + pct(bps / 10000, 3) + ")", meaning]);
  }
  if (stats) {
    rows.push(
      ["deflated_sharpe", "Deflated Sharpe ratio", stats.deflated_sharpe, num(stats.deflated_sharpe, 3),
       "probability the Sharpe ratio is above zero after allowing for every set tried; 0.95 or more is convincing"],
      ["pbo", "Probability of backtest overfitting", stats.pbo, num(stats.pbo, 3),
       stats.pbo === null ? "not computed: it needs at least 2 feasible parameter sets"
                          : "how often the in-sample best ranks below the median out of sample; lower is better, 0.5 or more is a warning"],
      ["walk_forward_efficiency", "Walk-forward efficiency", stats.walk_forward_efficiency, num(stats.walk_forward_efficiency, 2),
       stats.walk_forward_efficiency !== null ? "mean out-of-sample score over mean in-sample score of the windows; 0.5 or more is usually acceptable"
         : mode === "walk_forward" ? "undefined: the windows' mean in-sample score is not positive, or a window's score is undefined"
                                   : "only for walk-forward validation"],
    );
  }
  if (excess) {
    for (const set of ["train", "validation"]) {
      const e = excess[set] || {};
      rows.push([
        "excess_" + set, "Return over buy & hold (" + set + ")", e.total_return ?? null, pct(e.total_return ?? null),
        "strategy minus buy-and-hold on the same bars and costs; Sharpe difference " + num(e.sharpe ?? null, 2)]);
    }
  }
  rows.push(["overfit", "Overfitting flag", overfit ? 1 : 0, overfit ? "yes" : "no", reason ?? DASH]);
  table("stats", ["Statistic", { label: "Value", num: true }],
    rows.map(([key, label, value, text, meaning]) => el("tr", { dataset: { stat: key } },
      el("td", { className: "wrap" }, label, el("div", { className: "meaning" }, meaning)), numCell(value, text))));
}

function renderBias(cfg) {
  const checks = field(cfg, "bias_checks");
  $("bias-panel").hidden = !checks;
  if (!checks) return;
  const look = checks.lookahead, warm = checks.warmup;
  $("bias-verdict").className = checks.passed ? "ok" : "bad";
  setText("bias-verdict", checks.passed
    ? "Passed: no look-ahead and no warm-up shortfall found in the chosen parameters" +
      (checks.params_checked > 1 ? " (" + checks.params_checked + " parameter sets, one per window)." : ".")
    : "Failed.");
  const rows = [
    ["lookahead", "Look-ahead: bars tried", look.bars_tried.length, String(look.bars_tried.length),
     "positions up to each of these bars stayed the same when every later bar was replaced: " +
     (look.times_tried.length ? look.times_tried.join(", ") : "none (too few bars)")],
    ["warmup", "Warm-up: history lengths tried", warm.history_lengths.length,
     warm.history_lengths.length ? warm.history_lengths.join(", ") + " bars" : DASH,
     warm.skipped ? warm.skipped
       : "positions on " + warm.ranges.length + (warm.ranges.length === 1 ? " range" : " ranges") +
         " stayed the same with each of these bars of history in front; declared warm-up " + warm.declared + " bars"],
    ["seconds", "Time taken", checks.seconds, checks.seconds === null ? DASH : num(checks.seconds, 2) + " s",
     "both checks, on all the job's bars"],
  ];
  table("bias", ["Check", { label: "Value", num: true }],
    rows.map(([key, label, value, text, meaning]) => el("tr", { dataset: { check: key } },
      el("td", { className: "wrap" }, label, el("div", { className: "meaning" }, meaning)), numCell(value, text))));
}

function renderParams(cfg, importances) {
  const importance = importances || field(cfg, "param_importances") || {};
  table("params", ["Parameter", { label: "Value", num: true }, { label: "Importance", num: true }],
    Object.entries(cfg.params || {}).map(([name, value]) => {
      const weight = importance[name];
      const bar = weight === undefined || weight === null ? DASH
        : el("span", {}, el("meter", { min: 0, max: 1, value: weight }), " " + pct(weight, 0));
      return el("tr", { dataset: { param: name } }, el("td", {}, name),
        el("td", { className: "num", dataset: { value: JSON.stringify(value) } }, paramValue(value)),
        el("td", { className: "num", dataset: { value: weight ?? "" } }, bar));
    }));
}

function renderWindows(cfg) {
  const windows = field(cfg, "windows") || [];
  $("windows-panel").hidden = !windows.length;
  if (!windows.length) return;
  table("windows", ["#", "In sample", "Out of sample", "Parameters", { label: "IS score", num: true }, { label: "OOS score", num: true }],
    windows.map((w) => el("tr", { dataset: { window: w.index } }, el("td", {}, w.index),
      el("td", {}, when(w.in_sample_start) + " → " + when(w.in_sample_end)),
      el("td", {}, when(w.out_of_sample_start) + " → " + when(w.out_of_sample_end)),
      el("td", { className: "wrap", dataset: { value: JSON.stringify(w.params) } }, paramList(w.params)),
      numCell(w.in_sample_score, num(w.in_sample_score)), numCell(w.out_of_sample_score, num(w.out_of_sample_score)))));
}

function renderTrades(cfg, all) {
  const trades = field(cfg, "trades");
  $("trades-panel").hidden = !Array.isArray(trades);
  if (!Array.isArray(trades)) return;
  const shown = all ? trades : trades.slice(0, TRADES_SHOWN);
  const wins = trades.filter((t) => t.return > 0).length;
  setText("trades-note", trades.length + (trades.length === 1 ? " trade, " : " trades, ") + wins + " winning" +
    (shown.length < trades.length ? "; first " + shown.length + " shown" : "") + ".");
  $("more-trades").hidden = shown.length >= trades.length;
  table("trades", ["Entry", "Exit", "Side", { label: "Entry price", num: true }, { label: "Exit price", num: true },
                   { label: "Return", num: true }],
    shown.map((t, i) => el("tr", { dataset: { trade: i } }, el("td", {}, when(t.entry_time)), el("td", {}, when(t.exit_time)),
      el("td", {}, t.side), numCell(t.entry_price, num(t.entry_price, 2)), numCell(t.exit_price, num(t.exit_price, 2)),
      el("td", { className: "num " + (t.return > 0 ? "ok" : t.return < 0 ? "bad" : ""), dataset: { value: t.return } },
         pct(t.return, 2)))));
}

$("more-trades").addEventListener("click", () => renderTrades(page.configuration, true));

async function loadResults(job) {
  const [cfg, trials] = await Promise.all([
    api("GET", "/api/v2/training/configurations/" + encodeURIComponent(job.configuration_id)), loadTrials(),
  ]);
  page.configuration = cfg;
  renderScore(job);
  $("results").hidden = false;
  renderEquity(cfg);
  renderTrials(trials);
  renderMetrics(cfg);
  renderStatistics(cfg);
  renderBias(cfg);
  renderParams(cfg, job.param_importances);
  renderWindows(cfg);
  renderTrades(cfg, false);
}

// ---- loading and live updates -------------------------------------------------------------

let resultsShown = false;
let timer = null;
let catalog = null; // the API's value lists: what each status allows

function finished(status) { return statusInfo(catalog, status).finished; }

async function load() {
  try {
    const [job, loaded] = await Promise.all([api("GET", JOB), loadCatalog()]);
    catalog = loaded;
    page.job = job;
    renderHeader(job);
    renderStatus(job);
    renderAttempts(job);
    await loadHistory();
    if (job.configuration_id && !resultsShown) {
      await loadResults(job);
      resultsShown = true;
    }
    showError("");
    $("auth").hidden = true;
    if (!finished(job.status) && timer === null) timer = setInterval(poll, 2000);
    document.body.dataset.ready = "1";
  } catch (e) {
    showError(e.message);
    if (e.status === 401) $("auth").hidden = false;
    document.body.dataset.ready = "error";
  }
}

// While the job runs: the progress endpoint every 2 s; everything again when it changes state.
async function poll() {
  try {
    const progress = await api("GET", JOB + "/progress");
    const before = page.job.status;
    Object.assign(page.job, progress);
    renderStatus(page.job);
    if (progress.status !== before || finished(progress.status)) {
      if (finished(progress.status)) { clearInterval(timer); timer = null; }
      await load();
    }
  } catch (e) {
    showError(e.message);
  }
}

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value);
  load();
});

load();
