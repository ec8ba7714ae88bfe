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

// loadBacklog shows what the gateway reports about itself: readiness (/readyz) and the depth
// and oldest age of its queues (/metrics). What it does not report is left out.
async function loadBacklog() {
  const box = $('#overview-backlog');
  const parts = [];
  try {
    const ready = await fetchPublic('/readyz');
    if (ready.contentType.includes('json')) {
      const failed = Object.entries(JSON.parse(ready.text).checks || {}).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k}: ${v}`);
      parts.push(ready.status === 200
        ? h('p', {class: 'ready'}, 'The gateway is ready.')
        : h('p', {class: 'error ready'}, `The gateway is not ready (${failed.join('; ') || 'HTTP ' + ready.status}).`));
    }
  } catch {
    // not reported
  }
  try {
    const metrics = await fetchPublic('/metrics');
    const topics = metrics.status === 200 ? queues(metrics.text) : new Map();
    if (topics.size) {
      const total = [...topics.values()].reduce((n, q) => n + (q.depth || 0), 0);
      parts.push(h('p', {}, h('strong', {class: 'backlog'}, String(total)), ' messages queued in the whole gateway:'),
        h('table', {class: 'queues'},
          h('caption', {class: 'visually-hidden'}, 'Queues of the gateway'),
          h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Queue'), h('th', {scope: 'col'}, 'Messages'), h('th', {scope: 'col'}, 'Oldest'))),
          h('tbody', {}, [...topics].map(([topic, q]) => h('tr', {},
            h('th', {scope: 'row'}, h('code', {}, topic)),
            h('td', {}, String(q.depth ?? '—')),
            h('td', {}, q.age ? `${Math.round(q.age)} s` : '—'))))));
    }
  } catch {
    // not reported
  }
  replace(box, parts.length ? parts : h('p', {class: 'muted'}, 'This gateway reports neither its readiness nor its queues.'));
}

// queues reads the queue gauges of a Prometheus text page: topic -> {depth, age}.
function queues(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    const m = /^[a-zA-Z_:]*queue_(depth|oldest_age_seconds)\{([^}]*)\}\s+(\S+)/.exec(line);
    const topic = m && /topic="([^"]*)"/.exec(m[2]);
    const v = m && Number(m[3]);
    if (!topic || !Number.isFinite(v)) continue;
    const q = out.get(topic[1]) || {};
    if (m[1] === 'depth') q.depth = v; else q.age = v;
    out.set(topic[1], q);
  }
  return out;
}
