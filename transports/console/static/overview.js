// Overview: the client's records per status over the last hour and the last day, counted from
// Tracking API searches over receivedDate ranges, and the gateway's backlog when /readyz or
// /metrics report one.

import {api, fetchPublic} from './api.js';
import {$, h, replace} from './dom.js';
import {STATUSES, timeChart, legend} from './charts.js';

const PAGE_SIZE = 1000; // requests per tracking page (the API's maximum)
const MAX_PAGES = 20;   // beyond 20,000 requests a day the chart says it is partial

let loaded = false;

export function init() {
  $('#overview-refresh').addEventListener('click', load);
}

export function show() {
  if (!loaded) load();
}

export function hide() {}

async function load() {
  loaded = true;
  const now = new Date();
  const hour = buckets(now, 12, 5 * 60e3);
  const day = buckets(now, 24, 3600e3);
  const dayStart = day[0].start;
  const boxes = [$('#overview-hour'), $('#overview-day')];
  for (const b of boxes) if (!b.hasChildNodes()) b.append(h('p', {class: 'muted'}, 'Loading…'));
  loadBacklog();
  let requests, partial;
  try {
    ({requests, partial} = await received(dayStart, now));
  } catch (e) {
    for (const b of boxes) replace(b, h('p', {class: 'error'}, e.message));
    return;
  }
  for (const r of requests) {
    const t = new Date(r.receivedDate).getTime();
    add(day, t, r.messageStatusSummary);
    add(hour, t, r.messageStatusSummary);
  }
  draw(boxes[0], hour, 'Records received in the last hour, per 5 minutes', 2, false);
  draw(boxes[1], day, 'Records received in the last 24 hours, per hour', 3, partial);
  const waiting = requests.reduce((n, r) => n + ((r.messageStatusSummary || {}).queued || 0) + ((r.messageStatusSummary || {}).processing || 0), 0);
  replace($('#overview-waiting'), h('p', {}, h('strong', {class: 'waiting'}, String(waiting)),
    ` of your records received in the last 24 hours are queued or processing.`));
}

// buckets returns n buckets of width ms on round boundaries (whole 5 minutes, whole hours),
// the last one holding now.
function buckets(now, n, width) {
  const end = Math.floor(now.getTime() / width) * width + width;
  const start = new Date(end - n * width);
  return Array.from({length: n}, (_, i) => ({
    start: new Date(start.getTime() + i * width),
    end: new Date(start.getTime() + (i + 1) * width),
    counts: {},
  }));
}

function add(list, t, sum) {
  const b = list.find((x) => t >= x.start.getTime() && t < x.end.getTime());
  if (!b || !sum) return;
  for (const st of STATUSES) b.counts[st.key] = (b.counts[st.key] || 0) + (sum[st.key] || 0);
}

// received pages through the requests received in [from, to] (summaries only).
async function received(from, to) {
  const requests = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const data = (await api('POST', '/tracking', {
      search: [{by: 'receivedDate', value: [from.toISOString(), to.toISOString()]}],
      paging: {number: page, size: PAGE_SIZE, messages: {number: 1, size: 1}},
      sorts: [{by: 'receivedDate', order: 'desc'}],
    })).data;
    requests.push(...(data.requests || []));
    if (page >= (data.paging && data.paging.totalPages || 0)) return {requests, partial: false};
  }
  return {requests, partial: true};
}

function draw(box, list, title, labelEvery, partial) {
  const {svg, totals} = timeChart(list, {title, labelEvery});
  replace(box,
    svg,
    legend(totals, title),
    h('p', {class: 'total'}, `${totals.total} record${totals.total === 1 ? '' : 's'} in all`),
    partial && h('p', {class: 'notice error'}, `Only the newest ${MAX_PAGES * PAGE_SIZE} requests are counted.`));
}

// loadBacklog shows the queued work the gateway reports: a backlog number in /readyz's JSON,
// else queue depth gauges in /metrics. Without either the card says so.
async function loadBacklog() {
  const box = $('#overview-backlog');
  try {
    const ready = await fetchPublic('/readyz');
    if (ready.contentType.includes('json')) {
      const found = findNumbers(JSON.parse(ready.text), /backlog|queue|depth/i);
      if (found.length) {
        replace(box, h('p', {class: 'hint'}, 'Queued work of the whole gateway, from /readyz:'),
          h('dl', {class: 'facts'}, found.map(([k, v]) => [h('dt', {}, k), h('dd', {class: 'backlog'}, String(v))])),
          h('p', {class: 'hint'}, ready.status === 200 ? 'The gateway is ready.' : `The gateway is not ready (HTTP ${ready.status}).`));
        return;
      }
    }
    const metrics = await fetchPublic('/metrics');
    if (metrics.status === 200) {
      const depth = gauges(metrics.text, /queue_depth|backlog/);
      if (depth.size) {
        replace(box, h('p', {class: 'hint'}, 'Queued work of the whole gateway, from /metrics:'),
          h('dl', {class: 'facts'}, [...depth].map(([k, v]) => [h('dt', {}, k), h('dd', {class: 'backlog'}, String(v))])));
        return;
      }
    }
  } catch {
    // fall through: nothing usable reported
  }
  replace(box, h('p', {class: 'muted'}, 'This gateway does not report its queue depth.'));
}

// findNumbers returns [path, number] for every numeric field whose path matches re.
function findNumbers(v, re, path = '') {
  if (typeof v === 'number') return re.test(path) ? [[path, v]] : [];
  if (!v || typeof v !== 'object') return [];
  return Object.entries(v).flatMap(([k, x]) => findNumbers(x, re, path ? `${path}.${k}` : k));
}

// gauges sums the Prometheus samples whose metric name matches re, per label set.
function gauges(text, re) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !re.test(m[1])) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) out.set(m[1] + (m[2] || ''), v);
  }
  return out;
}
