// Charts drawn as SVG by hand: a request's status summary as one stacked bar, and records per
// status over time as stacked columns. Colours come from CSS classes (st-<status>), and every
// chart carries a text equivalent (aria-label, <title>, a legend with the numbers).

import {h, s} from './dom.js';

// STATUSES are the message statuses in stacking order, with the summary's key for each.
export const STATUSES = [
  {key: 'complete', label: 'Complete'},
  {key: 'invalid', label: 'Invalid'},
  {key: 'failed', label: 'Failed'},
  {key: 'cancelled', label: 'Cancelled'},
  {key: 'processing', label: 'Processing'},
  {key: 'queued', label: 'Queued'},
];

// describe says in words what a summary holds: "2 complete, 1 invalid (3 records)".
export function describe(sum) {
  const total = sum.total || 0;
  const parts = STATUSES.filter((st) => sum[st.key] > 0).map((st) => `${sum[st.key]} ${st.label.toLowerCase()}`);
  if (total === 0) return 'no records';
  return `${parts.join(', ')} (${total} record${total === 1 ? '' : 's'})`;
}

// statusBar draws a summary {total, queued, …} as one bar split by status.
export function statusBar(sum) {
  const label = describe(sum);
  const svg = s('svg', {class: 'bar', viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': label},
    s('title', {}, label));
  const total = sum.total || 0;
  if (total === 0) {
    svg.append(s('rect', {x: 0, y: 0, width: 100, height: 10, class: 'st-none'}));
    return svg;
  }
  let x = 0;
  for (const st of STATUSES) {
    const n = sum[st.key] || 0;
    if (n <= 0) continue;
    const w = (n / total) * 100;
    svg.append(s('rect', {x: x.toFixed(3), y: 0, width: w.toFixed(3), height: 10, class: 'st-' + st.key}));
    x += w;
  }
  return svg;
}

// legend lists every status with its count and colour, the numbers behind a chart.
export function legend(totals, caption) {
  return h('table', {class: 'legend'},
    h('caption', {class: 'visually-hidden'}, caption),
    h('thead', {class: 'visually-hidden'}, h('tr', {}, h('th', {scope: 'col'}, 'Status'), h('th', {scope: 'col'}, 'Records'))),
    h('tbody', {}, STATUSES.map((st) => h('tr', {dataset: {status: st.key}},
      h('th', {scope: 'row'}, s('svg', {class: 'swatch', viewBox: '0 0 10 10', 'aria-hidden': 'true'},
        s('rect', {width: 10, height: 10, class: 'st-' + st.key})), ' ', st.label),
      h('td', {}, String(totals[st.key] || 0))))));
}

const W = 640, H = 220, LEFT = 40, RIGHT = 8, TOP = 10, BOTTOM = 28;

// timeChart draws buckets [{start: Date, end: Date, counts: {complete: n, …}}] as stacked
// columns; labelEvery says which buckets get a time label on the x axis.
export function timeChart(buckets, {title, labelEvery = 1}) {
  const totals = buckets.map((b) => STATUSES.reduce((n, st) => n + (b.counts[st.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const sum = STATUSES.reduce((acc, st) => ({...acc, [st.key]: buckets.reduce((n, b) => n + (b.counts[st.key] || 0), 0)}), {});
  sum.total = totals.reduce((a, b) => a + b, 0);
  const label = `${title}: ${describe(sum)}`;
  const svg = s('svg', {class: 'timechart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label}, s('title', {}, label));
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  const y = (v) => TOP + plotH - (v / max) * plotH;
  for (const v of [0, max / 2, max]) {
    svg.append(s('line', {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: 'grid'}),
      s('text', {x: LEFT - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end'}, formatCount(v)));
  }
  const step = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, step * 0.78);
  buckets.forEach((b, i) => {
    const x = LEFT + i * step + (step - barW) / 2;
    let base = 0;
    const g = s('g', {class: 'column'});
    const tip = `${clock(b.start)}–${clock(b.end)}: ${describe({...b.counts, total: totals[i]})}`;
    g.append(s('title', {}, tip));
    for (const st of STATUSES) {
      const n = b.counts[st.key] || 0;
      if (n <= 0) continue;
      g.append(s('rect', {x: x.toFixed(2), y: y(base + n).toFixed(2), width: barW.toFixed(2),
        height: Math.max(0.5, y(base) - y(base + n)).toFixed(2), class: 'st-' + st.key}));
      base += n;
    }
    // An invisible full-height rect gives every column a hover target for its title.
    g.append(s('rect', {x: x.toFixed(2), y: TOP, width: barW.toFixed(2), height: plotH, class: 'hit'}));
    svg.append(g);
    if (i % labelEvery === 0) {
      svg.append(s('text', {x: (LEFT + i * step).toFixed(2), y: H - 8, class: 'axis'}, clock(b.start)));
    }
  });
  svg.append(s('line', {x1: LEFT, x2: W - RIGHT, y1: y(0), y2: y(0), class: 'baseline'}));
  return {svg, totals: sum};
}

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

function formatCount(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function clock(d) {
  return d.toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit', hourCycle: 'h23'});
}
