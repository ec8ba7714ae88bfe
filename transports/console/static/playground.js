// Playground: dry-run a record, a list of records or an envelope through one of the client's
// formats as the user types (POST /push?dry_run=true, debounced). Nothing is queued.

import {api} from './api.js';
import {$, h, replace, notice, debounce} from './dom.js';

let select, input, output, summary;
let formatsLoaded = false;
let seq = 0;
let inflight = null;

export function init() {
  select = $('#pg-format');
  input = $('#pg-input');
  output = $('#pg-output');
  summary = $('#pg-summary');
  const run = debounce(dryRun, 350);
  input.addEventListener('input', run);
  select.addEventListener('change', dryRun);
}

export async function show() {
  if (formatsLoaded) return;
  let data;
  try {
    data = await api('GET', '/api/v1/formats');
  } catch (e) {
    notice(summary, `Your formats could not be loaded: ${e.message}`, 'error');
    return;
  }
  const formats = (data && data.formats) || [];
  replace(select, formats.map((f) => h('option', {value: f.format}, `${f.format} (mapping ${f.mappingVersion})`)));
  formatsLoaded = true;
  if (!formats.length) notice(summary, 'No format is assigned to your client.', 'error');
  if (input.value.trim()) dryRun();
}

export function hide() {}

// envelope turns the text into an envelope for format, or returns {error}.
function envelope(text, format) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return {error: `Not valid JSON yet: ${e.message}`};
  }
  if (Array.isArray(v)) return {env: {format, payload: v}};
  if (v && typeof v === 'object') {
    if (Array.isArray(v.payload)) return {env: {...v, format: typeof v.format === 'string' ? v.format : format}};
    return {env: {format, payload: [v]}};
  }
  return {error: 'Give a JSON object (a record or an envelope) or a list of records.'};
}

async function dryRun() {
  const text = input.value;
  const mine = ++seq;
  if (inflight) inflight.abort();
  if (!text.trim()) {
    notice(summary, 'Type a record to see what the mapping makes of it.');
    replace(output);
    return;
  }
  const {env, error} = envelope(text, select.value);
  if (error) {
    notice(summary, error, 'error');
    return;
  }
  if (!env.format) {
    notice(summary, 'Pick a format.', 'error');
    return;
  }
  inflight = new AbortController();
  let res;
  try {
    res = await api('POST', '/push?dry_run=true', env, {signal: inflight.signal});
  } catch (e) {
    if (e.name === 'AbortError' || mine !== seq) return;
    notice(summary, e.message, 'error');
    replace(output);
    return;
  }
  if (mine !== seq) return;
  const records = res.records || [];
  const invalid = records.filter((r) => !r.valid).length;
  const note = env.format !== select.value ? ` (format ${env.format} from the envelope)` : '';
  notice(summary, `${records.length} record${records.length === 1 ? '' : 's'}: ${records.length - invalid} valid, ${invalid} invalid — mapping ${res.format}@${res.mappingVersion}${note}.`,
    invalid ? 'error' : 'ok');
  replace(output, records.map(recordCard));
}

// routesOf accepts both dry-run shapes: a list of routes per record, or one route and sink.
function routesOf(r) {
  if (Array.isArray(r.routes)) return r.routes;
  if (r.route || r.sink) return [{route: r.route, sink: r.sink, fields: r.fields}];
  return [];
}

function recordCard(r) {
  const title = [`Record ${r.index + 1}`, r.externalReference && `id ${r.externalReference}`, r.messageType && `type ${r.messageType}`]
    .filter(Boolean).join(' · ');
  return h('article', {class: 'record ' + (r.valid ? 'valid' : 'invalid'), dataset: {index: r.index}},
    h('h3', {}, title, ' ', h('span', {class: 'badge ' + (r.valid ? 'st-text-complete' : 'st-text-invalid')}, r.valid ? 'valid' : 'invalid')),
    r.valid
      ? routesOf(r).map((rt) => h('section', {class: 'route'},
        h('p', {}, 'Route ', h('strong', {class: 'route-name'}, rt.route), ' → sink ', h('strong', {class: 'sink-name'}, rt.sink), ' receives:'),
        fieldsTable(rt.fields)))
      : h('ul', {class: 'errors-list'}, (r.errors || []).map((e) => h('li', {}, e))));
}

function fieldsTable(fields) {
  const entries = Object.entries(fields || {});
  return h('table', {class: 'fields'},
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Field'), h('th', {scope: 'col'}, 'Value'))),
    h('tbody', {}, entries.map(([k, v]) => h('tr', {dataset: {field: k}},
      h('th', {scope: 'row'}, h('code', {}, k)),
      h('td', {}, h('code', {}, JSON.stringify(v)))))));
}
