// Small DOM helpers. Everything the console shows is built with these (text nodes, never
// innerHTML), so data from the gateway can never turn into markup or script.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h builds an element: h('td', {class: 'x', dataset: {key: 'a'}, onclick: fn}, 'text', child).
// Attributes named on* become event listeners; false, null and undefined attributes and
// children are skipped.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s builds an SVG element the same way.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === false || c == null) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// rerender replaces el's children like replace, but keeps what the user had there: the
// focused element and the open <details>, matched by their data-key attributes.
export function rerender(el, ...children) {
  const active = el.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  const open = new Set([...el.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
  replace(el, ...children);
  for (const d of el.querySelectorAll('details[data-key]')) d.open = open.has(d.dataset.key);
  if (active) {
    const again = el.querySelector(`[data-key="${CSS.escape(active)}"]`);
    if (again) again.focus();
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

// announce tells screen readers about an outcome without moving focus.
export function announce(text) {
  const el = $('#announce');
  el.textContent = '';
  // A fresh text node in a later task is announced even when the text repeats.
  setTimeout(() => { el.textContent = text; }, 50);
}

// notice shows text in a status paragraph (kind: '', 'error' or 'ok'); empty text hides it.
export function notice(el, text, kind = '') {
  el.textContent = text || '';
  el.hidden = !text;
  el.classList.toggle('error', kind === 'error');
  el.classList.toggle('ok', kind === 'ok');
}

// when formats an RFC 3339 time in the user's locale and zone; the exact UTC value stays in the
// title for copying.
export function when(iso) {
  if (!iso) return h('span', {class: 'muted'}, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return h('time', {datetime: iso, title: iso}, d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }));
}

// debounce returns fn delayed until calls pause for ms.
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// list splits a comma-separated field into its trimmed, non-empty values.
export function list(value) {
  return String(value || '').split(',').map((v) => v.trim()).filter(Boolean);
}
