// Shared by the dashboard pages: the token, calls to the API, and building the page from data.
// Every string from the API reaches the page through textContent (never innerHTML), so a job's
// text is shown as text whatever it holds.
"use strict";

const TOKEN_KEY = "trad-token";
(function takeTokenFromHash() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

const $ = (id) => document.getElementById(id);

function setToken(value) { sessionStorage.setItem(TOKEN_KEY, value.trim()); }

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail)
      ? data.detail.map((d) => d.loc.slice(1).join(".") + ": " + d.msg).join("; ")
      : data.detail;
    const error = new Error(response.status + " " + (detail || response.statusText));
    error.status = response.status;
    throw error;
  }
  return data;
}

// el("td", {className: "x", title: "…"}, "text", childNode, …): children are text or nodes.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (value !== undefined && value !== null) node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const DASH = "–";

function num(value, digits = 3) {
  return value === null || value === undefined || !Number.isFinite(value) ? DASH : value.toFixed(digits);
}

function pct(value, digits = 1) {
  return value === null || value === undefined || !Number.isFinite(value) ? DASH : (value * 100).toFixed(digits) + " %";
}

function when(value) {
  if (value === null || value === undefined) return DASH;
  return new Date(value).toISOString().replace("T", " ").slice(0, 19);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
  if (seconds < 1) return Math.round(seconds * 1000) + " ms";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return m + " min " + s + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

// A parameter value for people: numbers to 6 significant digits (the page keeps the exact value).
function paramValue(value) {
  return typeof value === "number" ? String(Number(value.toPrecision(6))) : JSON.stringify(value);
}

function paramList(params) {
  return Object.entries(params || {}).map(([name, value]) => name + " " + paramValue(value)).join(" · ");
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? DASH : String(text);
  if (className) td.className = className;
  return td;
}

// The API's catalogue (/api/v2/training/catalog): strategies, timeframes, priorities, job statuses,
// schedule policies and the request defaults. Asked for once per page; the pages keep no copy.
let catalogRequest = null;

function loadCatalog() {
  catalogRequest ??= api("GET", "/api/v2/training/catalog").catch((e) => { catalogRequest = null; throw e; });
  return catalogRequest;
}

// What a job in this status allows: {value, finished, cancelable, retryable}.
function statusInfo(catalog, status) {
  return catalog.job_statuses.find((s) => s.value === status) || { value: status };
}

// A select's options from a list of values; `all` adds a first option with the empty value.
function fillSelect(select, values, chosen, all) {
  const options = values.map((value) => el("option", { value }, value));
  if (all) options.unshift(el("option", { value: "" }, all));
  select.replaceChildren(...options);
  if (chosen !== undefined && values.includes(chosen)) select.value = chosen;
}

function statusText(job) {
  return job.status + (job.cancel_requested && job.status === "running" ? " (canceling)" : "");
}
