// Tracking: search the client's requests (POST /tracking, every criterion of the Tracking API),
// page and sort them, see each request's messages with their errors and mapping version,
// cancel a request (POST /tracking/cancel) and replay Failed and Invalid messages
// (POST /tracking/replay) of one request or of a whole search.

import {api} from './api.js';
import {$, $$, h, replace, rerender, notice, announce, when, list} from './dom.js';
import {statusBar, describe} from './charts.js';

const MESSAGES_PER_PAGE = 100;
const POLL_MS = 2000;
const FAR_PAST = '1970-01-01T00:00:00Z';
const FAR_FUTURE = '9999-12-31';
const REPLAYABLE = ['Failed', 'Invalid'];

const state = {
  page: 1,
  totalPages: 0,
  spec: null,        // the form values of the search shown
  order: [],         // request ids shown, in order
  summaries: new Map(), // request id -> JSON of its summary, to see what changed
  open: new Set(),   // request ids whose messages are shown
  msgPage: new Map(), // request id -> page of messages shown
  msgSeq: new Map(),  // request id -> number of its latest messages load
  poll: 0,
  seq: 0,            // numbers searches: only the latest one's answer is shown
  active: false,
};

let form, results, message;

export function init() {
  form = $('#tracking-form');
  results = $('#t-results');
  message = $('#t-message');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    state.page = 1;
    state.spec = snapshot();
    search();
  });
  form.addEventListener('reset', () => setTimeout(() => {
    showCustomRange();
    state.page = 1;
    state.spec = snapshot();
    search();
  }));
  $('#t-range').addEventListener('change', showCustomRange);
  $('#t-prev').addEventListener('click', () => { state.page--; search({keepFocus: '#t-prev'}); });
  $('#t-next').addEventListener('click', () => { state.page++; search({keepFocus: '#t-next'}); });
  $('#t-replay-search').addEventListener('click', replaySearch);
  document.addEventListener('visibilitychange', () => schedulePoll());
}

// show is called when the view opens; hide when another one does.
export function show() {
  state.active = true;
  if (!state.spec) {
    state.spec = snapshot();
    search();
  } else {
    schedulePoll();
  }
}

export function hide() {
  state.active = false;
  clearTimeout(state.poll);
}

function showCustomRange() {
  const custom = $('#t-range').value === 'custom';
  for (const el of $$('[data-custom-range]', form)) el.hidden = !custom;
}

// snapshot captures the form so paging and polling keep the search the user asked for.
function snapshot() {
  const f = new FormData(form);
  return {
    id: list(f.get('id')),
    batchReference: list(f.get('batchReference')),
    externalReference: list(f.get('externalReference')),
    messageType: list(f.get('messageType')),
    statuses: f.getAll('status'),
    range: f.get('range'),
    from: f.get('from'),
    to: f.get('to'),
    sort: f.get('sort'),
    order: f.get('order'),
    size: Number(f.get('size')) || 25,
  };
}

// criteria turns a snapshot into the Tracking API's search list; statuses replaces the
// snapshot's message statuses when given. Relative ranges are computed now.
function criteria(spec, statuses = spec.statuses) {
  const search = [];
  for (const by of ['id', 'batchReference', 'externalReference', 'messageType']) {
    if (spec[by].length) search.push({by, value: spec[by]});
  }
  if (statuses.length) search.push({by: 'messageStatus', value: statuses});
  const range = receivedRange(spec);
  if (range) search.push({by: 'receivedDate', value: range});
  return search;
}

function receivedRange(spec) {
  const now = Date.now();
  // A relative range ends a little in the future, so that polling finds requests that arrive
  // after the search was made.
  const ago = (ms) => [new Date(now - ms).toISOString(), new Date(now + 10 * 60e3).toISOString()];
  switch (spec.range) {
    case 'today': return [new Date(now).toISOString().slice(0, 10)];
    case '1h': return ago(3600e3);
    case '24h': return ago(24 * 3600e3);
    case '7d': return ago(7 * 24 * 3600e3);
    case '30d': return ago(30 * 24 * 3600e3);
    case 'custom': return [
      spec.from ? new Date(spec.from).toISOString() : FAR_PAST,
      spec.to ? new Date(spec.to).toISOString() : FAR_FUTURE,
    ];
    default: return [FAR_PAST, FAR_FUTURE]; // any time (no criterion at all would mean today)
  }
}

function query(spec) {
  return {
    search: criteria(spec),
    // The list shows summaries only: one message per request is enough.
    paging: {number: state.page, size: spec.size, messages: {number: 1, size: 1}},
    sorts: [{by: spec.sort, order: spec.order}],
  };
}

async function search({poll = false, keepFocus = null} = {}) {
  clearTimeout(state.poll);
  const mine = ++state.seq;
  const spec = state.spec;
  // A new search clears the last outcome now, not when it answers: a cancel or replay reported
  // meanwhile must stay on screen.
  if (!poll) notice(message, '');
  let data;
  try {
    data = (await api('POST', '/tracking', query(spec))).data;
  } catch (e) {
    if (mine !== state.seq) return;
    if (poll) schedulePoll(); // a blip: keep following what is shown
    else notice(message, e.message, 'error');
    return;
  }
  if (mine !== state.seq) return; // a newer search started meanwhile
  const paging = data.paging || {};
  state.totalPages = paging.totalPages || 0;
  if (state.page > 1 && state.page > state.totalPages) { // the last page emptied
    state.page = Math.max(1, state.totalPages);
    return search({poll, keepFocus});
  }
  render(data.requests || [], paging);
  if (!poll) announce(`${paging.totalRequests || 0} requests found`);
  if (keepFocus) $(keepFocus).disabled ? $('#t-page').focus() : $(keepFocus).focus();
  schedulePoll(data.requests);
}

// schedulePoll refreshes the list while a request shown is still being processed.
function schedulePoll(requests) {
  clearTimeout(state.poll);
  if (!state.active || document.hidden) return;
  const pending = Array.isArray(requests)
    ? requests.some((r) => r.requestStatus !== 'Complete')
    : [...results.querySelectorAll('[data-request-status]')].some((el) => el.dataset.requestStatus !== 'Complete');
  if (pending) state.poll = setTimeout(() => search({poll: true}), POLL_MS);
}

function render(requests, paging) {
  const ids = requests.map((r) => r.id);
  const same = ids.length === state.order.length && ids.every((id, i) => id === state.order[i]);
  if (same && ids.length) {
    for (const r of requests) update(r);
  } else {
    state.order = ids;
    state.summaries.clear();
    rerender(results, requests.length ? table(requests) : h('p', {class: 'empty'}, 'No requests match this search.'));
    for (const r of requests) if (state.open.has(r.id)) loadMessages(r.id);
  }
  const pager = $('#t-pager');
  pager.hidden = !(paging.totalPages > 1);
  $('#t-page').textContent = `Page ${paging.number || 1} of ${paging.totalPages || 1} · ${paging.totalRequests || 0} requests`;
  $('#t-page').tabIndex = -1;
  $('#t-prev').disabled = state.page <= 1;
  $('#t-next').disabled = state.page >= (paging.totalPages || 1);
}

function table(requests) {
  return h('table', {class: 'requests responsive'},
    h('caption', {class: 'visually-hidden'}, 'Requests matching the search'),
    h('thead', {}, h('tr', {},
      ['Received', 'Request', 'Batch reference', 'Status', 'Records', 'Actions'].map((c) => h('th', {scope: 'col'}, c)))),
    requests.map((r) => requestBody(r)));
}

// requestBody is a <tbody> per request: its row, and a row for its messages when opened.
function requestBody(r) {
  const detailID = 'msgs-' + r.id;
  const tb = h('tbody', {class: 'request', dataset: {id: r.id, requestStatus: r.requestStatus}},
    h('tr', {},
      h('td', {dataset: {label: 'Received'}}, when(r.receivedDate)),
      h('td', {dataset: {label: 'Request'}}, h('code', {class: 'id'}, r.id)),
      h('td', {dataset: {label: 'Batch reference'}}, r.batchReference != null ? h('code', {}, r.batchReference) : h('span', {class: 'muted'}, '—')),
      h('td', {dataset: {label: 'Status'}, class: 'status-cell'}),
      h('td', {dataset: {label: 'Records'}, class: 'summary-cell'}),
      h('td', {dataset: {label: 'Actions'}, class: 'actions-cell'},
        h('button', {type: 'button', class: 'toggle', 'aria-expanded': String(state.open.has(r.id)), 'aria-controls': detailID,
          dataset: {key: 'msgs:' + r.id}, onclick: () => toggleMessages(r.id)}, 'Messages'),
        h('button', {type: 'button', class: 'cancel', dataset: {key: 'cancel:' + r.id}, onclick: () => cancel(r.id)}, 'Cancel'),
        h('button', {type: 'button', class: 'replay', dataset: {key: 'replay:' + r.id}, onclick: () => replayRequest(r.id)}, 'Replay'))),
    h('tr', {class: 'messages-row', id: detailID, hidden: !state.open.has(r.id)},
      h('td', {colspan: 6}, h('div', {class: 'messages'}))));
  update(r, tb);
  return tb;
}

// update refreshes a request's status, bar and buttons in place (focus and open panels stay).
function update(r, tb = results.querySelector(`tbody[data-id="${CSS.escape(r.id)}"]`)) {
  if (!tb) return;
  const sum = r.messageStatusSummary || {};
  const key = JSON.stringify(sum) + r.requestStatus;
  const changed = state.summaries.has(r.id) && state.summaries.get(r.id) !== key;
  state.summaries.set(r.id, key);
  tb.dataset.requestStatus = r.requestStatus;
  replace(tb.querySelector('.status-cell'), h('span', {class: 'badge st-text-' + String(r.requestStatus).toLowerCase()}, r.requestStatus));
  replace(tb.querySelector('.summary-cell'), statusBar(sum), h('span', {class: 'summary-text'}, describe(sum)));
  const cancelBtn = tb.querySelector('button.cancel');
  cancelBtn.disabled = !(sum.queued > 0);
  cancelBtn.title = sum.queued > 0 ? `Cancel the ${sum.queued} queued messages` : 'Nothing left to cancel';
  const replayBtn = tb.querySelector('button.replay');
  const failed = (sum.failed || 0) + (sum.invalid || 0);
  replayBtn.disabled = failed === 0;
  replayBtn.title = failed ? `Replay the ${failed} Failed and Invalid messages` : 'No Failed or Invalid messages';
  if (changed && state.open.has(r.id)) loadMessages(r.id);
}

function toggleMessages(id) {
  const tb = results.querySelector(`tbody[data-id="${CSS.escape(id)}"]`);
  const btn = tb.querySelector('button.toggle');
  const row = tb.querySelector('.messages-row');
  const open = !state.open.has(id);
  if (open) state.open.add(id); else state.open.delete(id);
  btn.setAttribute('aria-expanded', String(open));
  row.hidden = !open;
  if (open) loadMessages(id);
}

// loadMessages shows one page of a request's messages (all statuses), keeping open error
// panels open.
async function loadMessages(id) {
  const tb = results.querySelector(`tbody[data-id="${CSS.escape(id)}"]`);
  if (!tb) return;
  const box = tb.querySelector('.messages');
  const page = state.msgPage.get(id) || 1;
  const mine = (state.msgSeq.get(id) || 0) + 1;
  state.msgSeq.set(id, mine);
  if (!box.hasChildNodes()) box.append(h('p', {class: 'muted'}, 'Loading messages…'));
  let r;
  try {
    const data = (await api('POST', '/tracking', {
      search: [{by: 'id', value: [id]}],
      paging: {number: 1, size: 1, messages: {number: page, size: MESSAGES_PER_PAGE}},
    })).data;
    r = (data.requests || [])[0];
  } catch (e) {
    if (state.msgSeq.get(id) === mine) replace(box, h('p', {class: 'error'}, e.message));
    return;
  }
  if (state.msgSeq.get(id) !== mine) return; // a later load of these messages is under way
  if (!r) {
    replace(box, h('p', {class: 'muted'}, 'This request is no longer found.'));
    return;
  }
  const msgs = r.payload || [];
  const total = (r.messageStatusSummary || {}).total || msgs.length;
  // A gateway that does not page messages returns them all at once.
  const paged = msgs.length <= MESSAGES_PER_PAGE && total > MESSAGES_PER_PAGE;
  const first = paged ? (page - 1) * MESSAGES_PER_PAGE : 0;
  rerender(box,
    h('table', {class: 'msgs responsive'},
      h('caption', {}, `Messages of request ${id}`,
        paged ? ` (${first + 1}–${first + msgs.length} of ${total})` : msgs.length < total ? ` (the first ${msgs.length} of ${total})` : ''),
      h('thead', {}, h('tr', {}, ['#', 'External reference', 'Type', 'Status', 'Processed', 'Mapping', 'Errors'].map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, msgs.map((m, i) => messageRow(m, first + i + 1)))),
    paged && h('div', {class: 'pager'},
      h('button', {type: 'button', dataset: {key: 'prev'}, disabled: page <= 1, onclick: () => { state.msgPage.set(id, page - 1); loadMessages(id); }}, 'Previous messages'),
      h('button', {type: 'button', dataset: {key: 'next'}, disabled: first + msgs.length >= total, onclick: () => { state.msgPage.set(id, page + 1); loadMessages(id); }}, 'Next messages')));
}

function messageRow(m, n) {
  const errors = m.errors || [];
  const version = mappingVersion(errors);
  return h('tr', {dataset: {message: m.id, status: m.messageStatus}},
    h('td', {dataset: {label: '#'}}, String(n)),
    h('td', {dataset: {label: 'External reference'}}, m.externalReference != null ? h('code', {title: 'message ' + m.id}, m.externalReference) : h('span', {class: 'muted', title: 'message ' + m.id}, '—')),
    h('td', {dataset: {label: 'Type'}}, m.messageType ?? '—'),
    h('td', {dataset: {label: 'Status'}}, h('span', {class: 'badge st-text-' + String(m.messageStatus).toLowerCase()}, m.messageStatus)),
    h('td', {dataset: {label: 'Processed'}}, when(m.processedTime)),
    h('td', {dataset: {label: 'Mapping'}, class: 'mapping'}, version ? h('code', {}, version) : h('span', {class: 'muted'}, '—')),
    h('td', {dataset: {label: 'Errors'}}, errors.length
      ? h('details', {class: 'errors', dataset: {key: 'errors:' + m.id}},
        h('summary', {dataset: {key: 'summary:' + m.id}}, `${errors.length} error${errors.length === 1 ? '' : 's'}`),
        h('ol', {}, errors.map((e) => h('li', {}, e.errorMessage))))
      : h('span', {class: 'muted'}, 'none')));
}

// mappingVersion reads "format@version" from the note the pipeline appends to a message's
// errors, " (mapping activity@1a2b3c4d5e6f)": the latest error names the latest run.
function mappingVersion(errors) {
  for (let i = errors.length - 1; i >= 0; i--) {
    const m = /\(mapping ([^()\s]+)\)\s*$/.exec(errors[i].errorMessage || '');
    if (m) return m[1];
  }
  return '';
}

async function cancel(id) {
  try {
    const res = await api('POST', '/tracking/cancel', {id});
    const n = (res.data && res.data.cancelled) || 0;
    notice(message, `Cancelled ${n} queued message${n === 1 ? '' : 's'} of request ${id}.`, 'ok');
  } catch (e) {
    notice(message, `Cancel failed: ${e.message}`, 'error');
  }
  await refreshAll();
}

// refreshAll reloads the list and every open message panel (after a cancel or a replay the
// messages may have changed while the summary looks the same).
async function refreshAll() {
  await search({poll: true});
  for (const id of state.order) if (state.open.has(id)) loadMessages(id);
}

async function replayRequest(id) {
  await replay({id}, `request ${id}`);
}

let confirmTimer = 0;

// replaySearch replays the Failed and Invalid messages of the current search; the first
// press asks for confirmation, the second within 6 s replays.
async function replaySearch() {
  const btn = $('#t-replay-search');
  const spec = snapshot();
  const statuses = spec.statuses.length ? spec.statuses.filter((st) => REPLAYABLE.includes(st)) : REPLAYABLE;
  if (!statuses.length) {
    notice(message, 'Only Failed and Invalid messages can be replayed: check one of them, or no status.', 'error');
    return;
  }
  if (!btn.dataset.confirm) {
    btn.dataset.confirm = btn.textContent;
    btn.textContent = 'Press again to replay every Failed and Invalid message of this search';
    btn.classList.add('confirm');
    confirmTimer = setTimeout(resetConfirm, 6000);
    return;
  }
  resetConfirm();
  await replay({search: criteria(spec, statuses)}, 'this search');
}

function resetConfirm() {
  clearTimeout(confirmTimer);
  const btn = $('#t-replay-search');
  if (btn.dataset.confirm) {
    btn.textContent = btn.dataset.confirm;
    delete btn.dataset.confirm;
    btn.classList.remove('confirm');
  }
}

async function replay(body, what) {
  try {
    const res = await api('POST', '/tracking/replay', body);
    const n = res && typeof res.replayed === 'number' ? res.replayed : 0;
    notice(message, `Replayed ${n} message${n === 1 ? '' : 's'} of ${what}: ${n === 1 ? 'it runs' : 'they run'} through the current mapping again.`, 'ok');
  } catch (e) {
    notice(message, `Replay failed: ${e.message}`, 'error');
    return;
  }
  await refreshAll();
}
