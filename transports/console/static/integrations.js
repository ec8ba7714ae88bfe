// Integrations (seed 003, DESIGN.md "Integrations"): list a hub's outbound integrations,
// create one, pause and resume it, regenerate its signing keys, delete it, and follow its
// deliveries with retry and recovery. Every call is the public Integrations API.

import {api} from './api.js';
import {$, $$, h, replace, rerender, notice, announce, when, list} from './dom.js';

const HUB_KEY = 'gateway-console.hub';
const ACTIVE = 3000;
const PAUSED = 3002;
const DELIVERIES_PER_PAGE = 20;

let hubForm, hubInput, message, body, listBox, detail, createForm, createError;
let hub = '';
let current = null; // the integration shown in detail
let deliveryPage = 1;
let active = false;
let deliveryPoll = 0;
const POLL_MS = 2000;

export function init() {
  hubForm = $('#int-hub-form');
  hubInput = $('#int-hub');
  message = $('#int-message');
  body = $('#int-body');
  listBox = $('#int-list');
  detail = $('#int-detail');
  createForm = $('#int-create');
  createError = $('#ic-error');
  hubInput.value = sessionStorage.getItem(HUB_KEY) || '';
  hubForm.addEventListener('submit', (e) => {
    e.preventDefault();
    hub = hubInput.value.trim();
    sessionStorage.setItem(HUB_KEY, hub);
    closeDetail();
    loadList();
  });
  $('#ic-channel').addEventListener('change', showChannelFields);
  createForm.addEventListener('submit', (e) => {
    e.preventDefault();
    create();
  });
}

export function show() {
  active = true;
  if (hubInput.value.trim() && !hub) {
    hub = hubInput.value.trim();
    loadList();
  } else if (current) {
    loadDeliveries();
  }
}

export function hide() {
  active = false;
  clearTimeout(deliveryPoll);
}

function showChannelFields() {
  const channel = $('#ic-channel').value;
  for (const el of $$('[data-channel]', createForm)) el.hidden = el.dataset.channel !== channel;
}

// items finds the list in a response: a bare array or {integrations|deliveries|data|items: […]}.
function items(data, key) {
  if (Array.isArray(data)) return data;
  for (const k of [key, 'data', 'items', 'results']) {
    if (data && Array.isArray(data[k])) return data[k];
  }
  return [];
}

function pick(o, ...keys) {
  for (const k of keys) if (o && o[k] != null) return o[k];
  return null;
}

async function loadList({focus} = {}) {
  if (!hub) return;
  let data;
  try {
    data = await api('GET', `/api/v1/integrations/hubs/${encodeURIComponent(hub)}`);
  } catch (e) {
    body.hidden = true;
    notice(message, e.message, 'error');
    return;
  }
  notice(message, '');
  body.hidden = false;
  const all = items(data, 'integrations');
  replace(listBox, all.length
    ? h('table', {class: 'integrations responsive'},
      h('caption', {class: 'visually-hidden'}, `Integrations of hub ${hub}`),
      h('thead', {}, h('tr', {}, ['Name', 'Channel', 'Status', 'Webhook', 'Events', 'Actions'].map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, all.map(row)))
    : h('p', {class: 'empty'}, 'This hub has no integrations yet.'));
  if (focus) {
    const el = listBox.querySelector(`[data-key="${CSS.escape(focus)}"]`);
    if (el) el.focus();
  }
}

function row(it) {
  const id = it.integrationId;
  const cfg = it.configuration || {};
  const paused = it.statusId === PAUSED;
  return h('tr', {dataset: {integration: id}},
    h('td', {dataset: {label: 'Name'}}, it.name),
    h('td', {dataset: {label: 'Channel'}}, it.channelId),
    h('td', {dataset: {label: 'Status'}}, h('span', {class: 'badge ' + (paused ? 'st-text-cancelled' : 'st-text-complete')}, statusName(it.statusId))),
    h('td', {dataset: {label: 'Webhook'}}, cfg.webhookUrl ? h('code', {}, cfg.webhookUrl) : h('span', {class: 'muted'}, 'WebSocket stream')),
    h('td', {dataset: {label: 'Events'}}, Array.isArray(cfg.events) ? cfg.events.join(', ') : '—'),
    h('td', {dataset: {label: 'Actions'}},
      h('button', {type: 'button', dataset: {key: 'open:' + id}, onclick: () => openDetail(id)}, 'Details'),
      h('button', {type: 'button', class: 'pause', dataset: {key: 'pause:' + id}, onclick: () => setStatus(it, paused ? ACTIVE : PAUSED)}, paused ? 'Resume' : 'Pause')));
}

function statusName(id) {
  if (id === ACTIVE) return 'Active';
  if (id === PAUSED) return 'Paused';
  return String(id ?? '—');
}

async function create() {
  const f = new FormData(createForm);
  const channel = f.get('channel');
  const configuration = {};
  const url = String(f.get('webhookUrl') || '').trim();
  if (url) configuration.webhookUrl = url;
  if (channel === 'System') {
    configuration.events = list(f.get('events'));
  } else {
    configuration.integrationType = String(f.get('integrationType') || '').trim();
    configuration.echo = f.get('echo') === 'on';
  }
  const req = {channelId: channel, name: String(f.get('name') || '').trim(), statusId: f.get('paused') === 'on' ? PAUSED : ACTIVE, configuration};
  let it;
  try {
    it = await api('POST', `/api/v1/integrations/hubs/${encodeURIComponent(hub)}`, req);
  } catch (e) {
    notice(createError, e.message, 'error');
    return;
  }
  notice(createError, '');
  createForm.reset();
  showChannelFields();
  $('#int-create-box').open = false;
  announce(`Integration ${it.name} created`);
  await loadList();
  showDetail(it, 'Integration created. Its signing secret is shown below; keep it safe.');
}

// update sends a partial update: the fields given replace the integration's.
async function update(id, fields) {
  return api('PUT', `/api/v1/integrations/${encodeURIComponent(id)}`, fields);
}

// setStatus pauses or resumes; focus stays on the button pressed (in the list or the detail).
async function setStatus(it, statusId, fromDetail = false) {
  try {
    await update(it.integrationId, {statusId});
  } catch (e) {
    notice(message, e.message, 'error');
    return;
  }
  notice(message, `${it.name} is ${statusName(statusId).toLowerCase()}.`, 'ok');
  await loadList({focus: fromDetail ? null : 'pause:' + it.integrationId});
  if (current && current.integrationId === it.integrationId) {
    await openDetail(it.integrationId, {keepFocus: true});
    if (fromDetail) $('#int-toggle').focus();
  }
}

async function openDetail(id, {keepFocus = false, note = ''} = {}) {
  let it;
  try {
    it = await api('GET', `/api/v1/integrations/${encodeURIComponent(id)}`);
  } catch (e) {
    notice(message, e.message, 'error');
    return;
  }
  showDetail(it, note, keepFocus);
}

function closeDetail() {
  clearTimeout(deliveryPoll);
  current = null;
  detail.hidden = true;
  replace(detail);
}

function showDetail(it, note = '', keepFocus = false) {
  const changed = !current || current.integrationId !== it.integrationId;
  current = it;
  if (changed) deliveryPage = 1;
  const cfg = it.configuration || {};
  const paused = it.statusId === PAUSED;
  const heading = h('h2', {tabindex: '-1'}, `Integration ${it.name}`);
  const secret = h('input', {type: 'password', readonly: true, id: 'int-secret', value: cfg.privateSigningKey || '', size: 48, spellcheck: 'false', autocomplete: 'off'});
  replace(detail,
    heading,
    note && h('p', {class: 'notice ok', role: 'status'}, note),
    h('dl', {class: 'facts'},
      fact('Id', h('code', {}, it.integrationId)),
      fact('Channel', it.channelId),
      fact('Type', it.integrationTypeId ?? '—'),
      fact('Status', statusName(it.statusId)),
      fact('Webhook', cfg.webhookUrl ? h('code', {}, cfg.webhookUrl) : 'WebSocket stream'),
      Array.isArray(cfg.events) && fact('Events', cfg.events.join(', ')),
      cfg.echo != null && fact('Echo', cfg.echo ? 'yes' : 'no'),
      fact('Public key (v1a)', cfg.publicSigningKey ? h('code', {class: 'key'}, cfg.publicSigningKey) : '—')),
    cfg.privateSigningKey && h('div', {class: 'secret'},
      h('label', {for: 'int-secret'}, 'Signing secret (v1)'),
      secret,
      h('button', {type: 'button', 'aria-controls': 'int-secret', onclick: (e) => {
        const show = secret.type === 'password';
        secret.type = show ? 'text' : 'password';
        e.currentTarget.textContent = show ? 'Hide secret' : 'Show secret';
      }}, 'Show secret')),
    h('div', {class: 'actions'},
      h('button', {type: 'button', id: 'int-toggle', onclick: () => setStatus(it, paused ? ACTIVE : PAUSED, true)}, paused ? 'Resume' : 'Pause'),
      confirmButton('Regenerate keys', 'Press again: old keys keep signing for the overlap period', () => regenerate(it)),
      confirmButton('Delete', 'Press again to delete this integration', () => remove(it))),
    deliveriesSection(it));
  detail.hidden = false;
  if (!keepFocus) heading.focus();
  loadDeliveries();
}

function fact(name, value) {
  return [h('dt', {}, name), h('dd', {}, value)];
}

// confirmButton runs action on a second press within 6 s; the first one asks.
function confirmButton(label, ask, action) {
  let timer = 0;
  const btn = h('button', {type: 'button', onclick: () => {
    if (btn.dataset.armed) {
      clearTimeout(timer);
      delete btn.dataset.armed;
      btn.textContent = label;
      btn.classList.remove('confirm');
      action();
      return;
    }
    btn.dataset.armed = '1';
    btn.textContent = ask;
    btn.classList.add('confirm');
    timer = setTimeout(() => {
      delete btn.dataset.armed;
      btn.textContent = label;
      btn.classList.remove('confirm');
    }, 6000);
  }}, label);
  return btn;
}

// regenerate replaces the configuration with itself plus regenerateKeys (the API replaces a
// configuration whole, and generates keys itself).
async function regenerate(it) {
  const cfg = {...(it.configuration || {})};
  delete cfg.privateSigningKey;
  delete cfg.publicSigningKey;
  cfg.regenerateKeys = true;
  let updated;
  try {
    updated = await update(it.integrationId, {configuration: cfg});
  } catch (e) {
    notice(message, e.message, 'error');
    return;
  }
  if (!updated || !updated.configuration) return openDetail(it.integrationId, {note: 'New keys generated.'});
  showDetail(updated, 'New keys generated; the old ones keep signing for the overlap period.');
}

async function remove(it) {
  try {
    await api('DELETE', `/api/v1/integrations/${encodeURIComponent(it.integrationId)}`);
  } catch (e) {
    notice(message, e.message, 'error');
    return;
  }
  closeDetail();
  notice(message, `Integration ${it.name} deleted.`, 'ok');
  await loadList();
  hubInput.focus();
}

function deliveriesSection(it) {
  return h('section', {class: 'deliveries', 'aria-labelledby': 'deliveries-h'},
    h('h3', {id: 'deliveries-h'}, 'Deliveries'),
    h('form', {class: 'inline-form', id: 'dl-filter', method: 'post', onsubmit: (e) => { e.preventDefault(); deliveryPage = 1; loadDeliveries(); }},
      h('label', {for: 'dl-status'}, 'Status'),
      h('select', {id: 'dl-status', name: 'status'},
        h('option', {value: ''}, 'All'),
        ['pending', 'succeeded', 'failed'].map((s) => h('option', {value: s}, s))),
      h('button', {type: 'submit'}, 'Show deliveries')),
    h('p', {id: 'dl-message', class: 'notice', role: 'status', hidden: true}),
    h('div', {id: 'dl-list'}),
    h('form', {class: 'inline-form', id: 'dl-recover', method: 'post', onsubmit: (e) => { e.preventDefault(); recover(it); }},
      h('label', {for: 'dl-since'}, 'Resend every failed delivery since'),
      h('input', {id: 'dl-since', type: 'datetime-local', required: true, step: 1}),
      h('button', {type: 'submit'}, 'Resend failed')));
}

// loadDeliveries shows a page of the current integration's deliveries and refreshes it while
// the integration is open (more often while one is pending).
async function loadDeliveries() {
  clearTimeout(deliveryPoll);
  if (!current) return;
  const shown = current;
  const status = $('#dl-status') ? $('#dl-status').value : '';
  const q = new URLSearchParams({page: String(deliveryPage), size: String(DELIVERIES_PER_PAGE)});
  if (status) q.set('status', status);
  const box = $('#dl-list');
  let data;
  try {
    data = await api('GET', `/api/v1/integrations/${encodeURIComponent(current.integrationId)}/deliveries?${q}`);
  } catch (e) {
    replace(box, h('p', {class: 'error'}, e.message));
    return;
  }
  if (shown !== current || !box.isConnected) return; // another integration opened meanwhile
  const all = items(data, 'deliveries');
  const paging = (data && data.paging) || {};
  const pages = paging.totalPages || (all.length >= DELIVERIES_PER_PAGE ? deliveryPage + 1 : deliveryPage);
  rerender(box, all.length
    ? h('table', {class: 'deliveries responsive'},
      h('caption', {class: 'visually-hidden'}, 'Deliveries of this integration'),
      h('thead', {}, h('tr', {}, ['Created', 'Event', 'Status', 'Attempts', 'Actions'].map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, all.map(deliveryRow)))
    : h('p', {class: 'empty'}, 'No deliveries.'),
  pages > 1 && h('div', {class: 'pager'},
    h('button', {type: 'button', disabled: deliveryPage <= 1, onclick: () => { deliveryPage--; loadDeliveries(); }}, 'Newer deliveries'),
    h('span', {}, `Page ${deliveryPage} of ${pages}`),
    h('button', {type: 'button', disabled: deliveryPage >= pages, onclick: () => { deliveryPage++; loadDeliveries(); }}, 'Older deliveries')));
  // A live log: new deliveries and attempts show up while the integration is open.
  if (active) deliveryPoll = setTimeout(loadDeliveries, all.some((d) => pick(d, 'status') === 'pending') ? POLL_MS : 2 * POLL_MS);
}

function deliveryRow(d) {
  const id = pick(d, 'deliveryId', 'id');
  const attempts = pick(d, 'attempts') || [];
  return h('tr', {dataset: {delivery: id}},
    h('td', {dataset: {label: 'Created'}}, when(pick(d, 'createdAt', 'created', 'timestamp'))),
    h('td', {dataset: {label: 'Event'}}, pick(d, 'type', 'eventType', 'event') ?? '—'),
    h('td', {dataset: {label: 'Status'}}, h('span', {class: 'badge st-text-' + String(pick(d, 'status') || '').toLowerCase()}, pick(d, 'status') ?? '—'),
      pick(d, 'nextAttemptAt') && h('span', {class: 'summary-text'}, 'next attempt ', when(pick(d, 'nextAttemptAt')))),
    h('td', {dataset: {label: 'Attempts'}}, attempts.length
      ? h('details', {dataset: {key: 'attempts:' + id}}, h('summary', {dataset: {key: 'summary:' + id}}, `${attempts.length} attempt${attempts.length === 1 ? '' : 's'}`),
        h('ol', {}, attempts.map((a) => h('li', {},
          when(pick(a, 'time', 'at', 'attemptedAt', 'timestamp')), ' — ',
          pick(a, 'responseStatus', 'status', 'statusCode') != null ? `HTTP ${pick(a, 'responseStatus', 'status', 'statusCode')}` : 'no response',
          pick(a, 'error') ? ` — ${pick(a, 'error')}` : ''))))
      : h('span', {class: 'muted'}, 'none yet')),
    h('td', {dataset: {label: 'Actions'}}, h('button', {type: 'button', class: 'retry', dataset: {key: 'retry:' + id}, onclick: () => retry(id)}, 'Retry')));
}

async function retry(deliveryId) {
  const msg = $('#dl-message');
  try {
    await api('POST', `/api/v1/integrations/${encodeURIComponent(current.integrationId)}/deliveries/${encodeURIComponent(deliveryId)}/retry`);
  } catch (e) {
    notice(msg, e.message, 'error');
    return;
  }
  notice(msg, `Delivery ${deliveryId} is being resent.`, 'ok');
  loadDeliveries();
}

async function recover(it) {
  const msg = $('#dl-message');
  const since = new Date($('#dl-since').value);
  if (Number.isNaN(since.getTime())) {
    notice(msg, 'Give a time to resend from.', 'error');
    return;
  }
  let res;
  try {
    res = await api('POST', `/api/v1/integrations/${encodeURIComponent(it.integrationId)}/recover`, {since: since.toISOString()});
  } catch (e) {
    notice(msg, e.message, 'error');
    return;
  }
  const n = res && pick(res, 'recovered', 'resent', 'count');
  notice(msg, n != null ? `${n} failed deliveries are being resent.` : 'Failed deliveries are being resent.', 'ok');
  loadDeliveries();
}
