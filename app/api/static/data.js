// The dashboard's Data panel: each stored symbol and timeframe with its range, bar count,
// sources and last refresh, from GET /api/v2/candles. dashboard.js calls refreshData() with
// the rest of the page.
"use strict";
const CANDLES = "/api/v2/candles";
let dataGeneration = 0;

function renderData(series) {
  const body = $("candles");
  body.replaceChildren();
  for (const s of series) {
    const row = body.insertRow();
    row.dataset.symbol = s.symbol;
    row.dataset.timeframe = s.timeframe;
    cell(row, s.symbol);
    cell(row, s.timeframe);
    cell(row, when(s.first)).dataset.time = s.first;
    cell(row, when(s.last)).dataset.time = s.last;
    cell(row, s.bars.toLocaleString("en-US")).dataset.bars = s.bars;
    cell(row, s.sources.join(", ")).classList.add("sources");
    const refreshed = cell(row, s.last_refresh_at ? when(s.last_refresh_at) : "never");
    refreshed.classList.add("last-refresh");
    if (s.last_refresh_at) refreshed.dataset.time = s.last_refresh_at;
  }
  if (!series.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = 7;
    td.textContent = "no candles stored";
  }
}

// An older answer that arrives after a newer one does not overwrite it.
async function refreshData() {
  const generation = ++dataGeneration;
  const page = await api("GET", CANDLES);
  if (generation === dataGeneration) renderData(page.items);
}
