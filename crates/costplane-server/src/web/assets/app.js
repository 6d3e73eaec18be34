// costplane's cost page: reads only the public API, draws with inline SVG.
// Money stays the API's decimal text for display (never rounded through
// floating point); numbers are parsed only to size bars and sort rows.
'use strict';

const KEY_STORAGE = 'costplane.apiKey';
const DIMENSIONS = ['tenant', 'project', 'service', 'model', 'source'];
const REFRESH_MS = 30000;
const SVG = 'http://www.w3.org/2000/svg';

let currency = 'USD';
let refreshTimer = null;

class NeedKey extends Error {}

function apiKey() { return sessionStorage.getItem(KEY_STORAGE) || ''; }

function headers() {
  const key = apiKey();
  return key ? { Authorization: 'Bearer ' + key } : {};
}

async function get(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 401) throw new NeedKey('an API key is required');
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch (e) { throw new Error(path + ' answered ' + response.status + ': ' + text.slice(0, 200)); }
  if (!response.ok && path !== '/readyz') throw new Error(path + ': ' + (body.error || response.status));
  return body;
}

function query(params) {
  return Object.entries(params).filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');
}

const costs = (params) => get('/api/v1/costs?' + query(params));

// ---- formatting -------------------------------------------------------

function groupThousands(digits) { return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ','); }

// "1234.5" -> "$1,234.50": the API's exact digits, at least two decimals.
function money(text) {
  let s = String(text === undefined || text === null || text === '' ? '0' : text);
  const negative = s.startsWith('-');
  if (negative) s = s.slice(1);
  let [whole, frac = ''] = s.split('.');
  while (frac.length < 2) frac += '0';
  const symbol = currency === 'USD' ? '$' : '';
  const suffix = currency === 'USD' ? '' : ' ' + currency;
  return (negative ? '-' : '') + symbol + groupThousands(whole) + '.' + frac + suffix;
}

function count(text) {
  const s = String(text === undefined || text === null || text === '' ? '0' : text);
  const [whole, frac] = s.split('.');
  return groupThousands(whole) + (frac ? '.' + frac : '');
}

const num = (text) => Number.parseFloat(text) || 0;
const label = (name) => (name === '' ? '(none)' : name);

function utcDay(d) { return d.toISOString().slice(0, 10); }
function utcMonth(d) { return d.toISOString().slice(0, 7); }

// ---- DOM helpers ------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fillBody(table, rows) {
  const body = table.tBodies[0] || table.appendChild(el('tbody'));
  body.replaceChildren(...rows);
}

function emptyRow(columns, text) {
  return el('tr', {}, el('td', { colspan: columns, class: 'muted' }, text));
}

// ---- charts -----------------------------------------------------------

// Vertical bars over time: points = [{label, value, title}].
function barChart(container, points, emptyText) {
  if (!points.length || points.every((p) => p.value === 0)) {
    container.replaceChildren(el('p', { class: 'muted' }, emptyText));
    return;
  }
  const width = 1000, height = 220, left = 70, bottom = 30, top = 10;
  const max = Math.max(...points.map((p) => p.value));
  const slot = (width - left) / points.length;
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
  for (const fraction of [0, 0.5, 1]) {
    const y = top + (height - top - bottom) * (1 - fraction);
    svg.append(svgEl('line', { x1: left, x2: width, y1: y, y2: y, stroke: '#e4e7ec' }));
    svg.append(svgEl('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, '$' + (max * fraction).toPrecision(3)));
  }
  points.forEach((p, i) => {
    const h = max > 0 ? ((height - top - bottom) * p.value) / max : 0;
    const rect = svgEl('rect', {
      class: 'bar', x: left + i * slot + 1, y: height - bottom - h, width: Math.max(slot - 2, 1), height: h,
    });
    rect.append(svgEl('title', {}, p.title));
    svg.append(rect);
    if (i % 6 === 0) svg.append(svgEl('text', { x: left + i * slot, y: height - 10 }, p.label));
  });
  container.replaceChildren(svg);
}

// Horizontal bars, largest first: rows = [{name, cost}].
function rankChart(container, allRows, emptyText) {
  const rows = allRows.filter((r) => num(r.cost) > 0);
  if (!rows.length) {
    container.replaceChildren(el('p', { class: 'muted' }, emptyText));
    return;
  }
  const rowHeight = 24, width = 480, labelWidth = 190, valueWidth = 80;
  const max = Math.max(...rows.map((r) => num(r.cost)), 0);
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${rows.length * rowHeight + 4}`, role: 'img' });
  rows.forEach((r, i) => {
    const y = i * rowHeight + 2;
    const w = max > 0 ? ((width - labelWidth - valueWidth) * num(r.cost)) / max : 0;
    svg.append(svgEl('text', { x: 0, y: y + 16 }, label(r.name).slice(0, 34)));
    svg.append(svgEl('rect', { class: 'bar', x: labelWidth, y: y + 4, width: Math.max(w, 1), height: rowHeight - 8 }));
    svg.append(svgEl('text', { x: width, y: y + 16, 'text-anchor': 'end' }, money(r.cost)));
  });
  container.replaceChildren(svg);
}

// ---- sections ---------------------------------------------------------

function byCostDesc(rows) { return rows.slice().sort((a, b) => num(b.cost) - num(a.cost)); }

async function loadBreakdowns(today, monthStart) {
  const results = await Promise.all(DIMENSIONS.flatMap((d) => [
    costs({ from: today, group_by: d }),
    costs({ from: monthStart, group_by: d }),
  ]));
  const host = document.getElementById('breakdowns');
  const tables = [];
  DIMENSIONS.forEach((d, i) => {
    const [day, month] = [results[2 * i], results[2 * i + 1]];
    if (i === 0) {
      currency = month.currency || currency;
      document.getElementById('today-total').textContent = money(day.total);
      document.getElementById('month-total').textContent = money(month.total);
    }
    const todayBy = new Map(day.rows.map((r) => [r[d], r.cost]));
    const rows = byCostDesc(month.rows).map((r) => el('tr', { 'data-key': r[d] },
      el('td', {}, label(r[d])), el('td', { class: 'num' }, money(todayBy.get(r[d]) || '0')), el('td', { class: 'num' }, money(r.cost))));
    const table = el('table', { id: 'by-' + d },
      el('thead', {}, el('tr', {}, el('th', {}, d[0].toUpperCase() + d.slice(1)), el('th', { class: 'num' }, 'Today'), el('th', { class: 'num' }, 'This month'))),
      el('tbody', {}, ...(rows.length ? rows : [emptyRow(3, 'no costs yet')])));
    tables.push(el('div', {}, el('h2', {}, 'By ' + d), table));
    if (d === 'model') rankChart(document.getElementById('top-models'), byCostDesc(month.rows).slice(0, 10).map((r) => ({ name: r.model, cost: r.cost })), 'no model costs yet');
  });
  host.replaceChildren(...tables);
}

async function loadTrend(now) {
  const start = new Date(Math.floor(now.getTime() / 3600000) * 3600000 - 47 * 3600000);
  const result = await costs({ from: start.toISOString().replace('.000Z', 'Z'), step: 'hour' });
  const byHour = new Map(result.rows.map((r) => [r.period_start, r.cost]));
  const points = [];
  for (let i = 0; i < 48; i++) {
    const t = new Date(start.getTime() + i * 3600000).toISOString().replace('.000Z', 'Z');
    const cost = byHour.get(t) || '0';
    points.push({ label: t.slice(5, 13).replace('T', ' ') + 'h', value: num(cost), title: t + ': ' + money(cost) });
  }
  barChart(document.getElementById('trend'), points, 'no costs in the last 48 hours');
}

async function loadOperations(monthStart) {
  const result = await costs({ from: monthStart, group_by: 'operation', source: 'llm' });
  rankChart(document.getElementById('top-operations'),
    byCostDesc(result.rows).slice(0, 10).map((r) => ({ name: r.operation, cost: r.cost })), 'no LLM operations yet');
}

async function loadTokens(monthStart) {
  const result = await costs({ from: monthStart, group_by: 'usage_type', source: 'llm' });
  const rows = result.rows.map((r) => el('tr', { 'data-key': r.usage_type },
    el('td', {}, label(r.usage_type)), el('td', { class: 'num' }, count(r.quantity)), el('td', { class: 'num' }, money(r.cost))));
  fillBody(document.getElementById('tokens'), rows.length ? rows : [emptyRow(3, 'no LLM usage yet')]);
}

async function loadUnpriced(monthStart) {
  const result = await get('/api/v1/costs/unpriced?' + query({ from: monthStart }));
  let total = 0n;
  const rows = result.rows.map((r) => {
    total += BigInt(String(r.tokens).split('.')[0] || '0');
    return el('tr', { 'data-key': r.model }, el('td', {}, label(r.model)), el('td', {}, label(r.provider)), el('td', {}, label(r.tenant)),
      el('td', {}, label(r.token_type)), el('td', { class: 'num' }, count(r.tokens)));
  });
  document.getElementById('unpriced-total').textContent = count(total.toString());
  fillBody(document.getElementById('unpriced'), rows.length ? rows : [emptyRow(5, 'every model is priced')]);
}

// Estimated against invoiced per provider and model (the API's default
// window: last month and this month).
async function loadReconciliation() {
  const r = await get('/api/v1/reconciliation?' + query({ group_by: 'provider,model' }));
  const rows = r.lines.map((l) => el('tr', { 'data-key': l.provider + '/' + l.model, 'data-status': l.status },
    el('td', {}, label(l.provider)), el('td', {}, l.model === '' ? '(no model)' : l.model),
    el('td', { class: 'status-' + l.status }, l.status),
    el('td', { class: 'num' }, money(l.estimated_cost)), el('td', { class: 'num' }, money(l.invoiced_cost)),
    el('td', { class: 'num' }, money(l.drift)), el('td', { class: 'num' }, l.drift_percent === null ? '–' : l.drift_percent + '%'),
    el('td', { class: 'num' }, count(l.unpriced_tokens))));
  fillBody(document.getElementById('reconciliation'), rows.length ? rows : [emptyRow(8, 'no estimates or invoices in this window')]);
}

// Cost per request, month to date: the month's groups (the API sorts them
// by total cost) re-ranked by cost per request, the 10 highest shown.
const UNIT_GROUPS = 1000;
const UNIT_SHOWN = 10;

function byPerRequestDesc(groups) {
  return groups.slice().sort((a, b) => num(b.cost.per_request) - num(a.cost.per_request) || num(b.cost.total) - num(a.cost.total));
}

// Compute is unknown (null) when no request of the group ran on a pod with
// a Kubernetes cost; a known figure says how many requests it leaves out.
function computeText(g) {
  if (g.cost.compute === null) return 'unknown';
  const unknown = g.compute.requests_unknown;
  return money(g.cost.compute) + (unknown > 0 ? ' (+' + count(unknown) + ' unknown)' : '');
}

function unitCells(g) {
  return [
    el('td', { class: 'num' }, count(g.requests)), el('td', { class: 'num' }, g.p50_seconds), el('td', { class: 'num' }, g.p95_seconds),
    el('td', { class: 'num' }, g.error_ratio), el('td', { class: 'num' }, money(g.cost.llm)),
    el('td', { class: 'num' + (g.cost.compute === null ? ' muted' : '') }, computeText(g)), el('td', { class: 'num' }, money(g.cost.telemetry)),
    el('td', { class: 'num' }, money(g.cost.total)), el('td', { class: 'num' }, money(g.cost.per_request)),
  ];
}

async function loadUnitCosts(monthStart) {
  const ask = (groupBy) => get('/api/v1/unit-costs?' + query({ from: monthStart, group_by: groupBy, limit: UNIT_GROUPS }));
  const [routes, customers] = await Promise.all([ask('service,route'), ask('customer')]);
  const routeRows = byPerRequestDesc(routes.groups).slice(0, UNIT_SHOWN).map((g) => el('tr', { 'data-key': g.service + ' ' + g.route },
    el('td', {}, label(g.service)), el('td', {}, label(g.route)), ...unitCells(g)));
  fillBody(document.getElementById('unit-routes'), routeRows.length ? routeRows : [emptyRow(11, 'no requests this month')]);
  const customerRows = byPerRequestDesc(customers.groups).slice(0, UNIT_SHOWN).map((g) => el('tr', { 'data-key': g.customer },
    el('td', {}, label(g.customer)), ...unitCells(g)));
  fillBody(document.getElementById('unit-customers'), customerRows.length ? customerRows : [emptyRow(10, 'no requests this month')]);
}

async function loadHealth() {
  const h = await get('/readyz');
  const stateEl = document.getElementById('ingest-state');
  stateEl.textContent = h.ready ? 'ready' : 'not ready';
  stateEl.className = 'big ' + (h.ready ? 'ok' : 'error');
  document.getElementById('store').textContent = 'store: ' + h.store;
  document.getElementById('ingest-summary').textContent = count(h.written_rows) + ' rows stored, ' + count(h.refused_rows) + ' refused';
  const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';
  const facts = [
    ['Store', h.store + (h.store_healthy ? ' (healthy)' : ' (failing: writes are retried)')],
    ['Rows accepted', count(h.accepted_rows)],
    ['Rows stored', count(h.written_rows)],
    ['Rows refused', count(h.refused_rows)],
    ['Rows dead-lettered', count(h.dead_lettered_rows)],
    ['Queued in memory', mib(h.queued_bytes) + ' of ' + mib(h.memory_limit_bytes)],
  ];
  if (h.buffer && typeof h.buffer === 'object') {
    for (const [k, v] of Object.entries(h.buffer)) {
      if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') facts.push(['Buffer ' + k.replace(/_/g, ' '), String(v)]);
    }
  }
  fillBody(document.getElementById('health'), facts.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', { class: 'num' }, v))));
}

// Downloads go through fetch so the API key travels in a header, never in a URL.
async function download(format) {
  const month = document.getElementById('export-month').value;
  const response = await fetch('/api/costs/export?' + query({ month, format }), { headers: headers() });
  if (!response.ok) {
    showError('export failed: ' + (await response.text()));
    return;
  }
  const disposition = response.headers.get('content-disposition') || '';
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || `costplane-${format}-${month}.csv`;
  const url = URL.createObjectURL(await response.blob());
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function setExportLinks() {
  const month = document.getElementById('export-month').value;
  document.getElementById('export-csv').href = '/api/costs/export?' + query({ month, format: 'csv' });
  document.getElementById('export-focus').href = '/api/costs/export?' + query({ month, format: 'focus' });
}

// ---- key prompt and refresh -------------------------------------------

function showError(text) {
  const e = document.getElementById('error');
  e.textContent = text;
  e.hidden = !text;
}

function askForKey(message) {
  document.getElementById('key-form').hidden = false;
  document.getElementById('key-error').textContent = message || '';
  document.getElementById('dashboard').hidden = true;
  document.getElementById('key-input').focus();
}

async function refresh() {
  clearTimeout(refreshTimer);
  const now = new Date();
  const today = utcDay(now);
  const monthStart = utcMonth(now) + '-01';
  document.getElementById('month-name').textContent = utcMonth(now);
  try {
    await loadBreakdowns(today, monthStart);
    await Promise.all([loadTrend(now), loadOperations(monthStart), loadTokens(monthStart), loadUnpriced(monthStart), loadReconciliation(), loadUnitCosts(monthStart), loadHealth()]);
    document.getElementById('dashboard').hidden = false;
    document.getElementById('key-form').hidden = true;
    document.getElementById('updated').textContent = 'updated ' + now.toISOString().slice(11, 19) + ' UTC';
    document.body.dataset.loaded = 'true';
    showError('');
  } catch (e) {
    if (e instanceof NeedKey) {
      askForKey(apiKey() ? 'That key was not accepted.' : '');
      return;
    }
    showError(e.message);
  }
  refreshTimer = setTimeout(refresh, REFRESH_MS);
}

function init() {
  const monthInput = document.getElementById('export-month');
  monthInput.value = utcMonth(new Date());
  monthInput.addEventListener('change', setExportLinks);
  setExportLinks();
  for (const [id, format] of [['export-csv', 'csv'], ['export-focus', 'focus']]) {
    document.getElementById(id).addEventListener('click', (ev) => {
      ev.preventDefault();
      download(format);
    });
  }
  document.getElementById('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, document.getElementById('key-input').value.trim());
    document.getElementById('key-input').value = '';
    refresh();
  });
  document.getElementById('key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    askForKey('');
  });
  document.getElementById('key-button').addEventListener('click', () => askForKey(''));
  refresh();
}

init();
