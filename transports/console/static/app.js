// The console's entry point: sign in and out, and a hash router (#/overview, #/tracking,
// #/playground, #/integrations) over views that each own one <section> of index.html.

import {session, signIn, endSession, takeFlash} from './api.js';
import {$, $$, notice} from './dom.js';
import * as overview from './overview.js';
import * as tracking from './tracking.js';
import * as playground from './playground.js';
import * as integrations from './integrations.js';

const views = {overview, tracking, playground, integrations};
let current = null;
let signedIn = false;

function start() {
  for (const v of Object.values(views)) v.init();
  $('#signin-form').addEventListener('submit', onSignIn);
  $('#signout').addEventListener('click', signOut);
  $('#skip').addEventListener('click', (e) => {
    e.preventDefault();
    $('#main').focus();
  });
  window.addEventListener('hashchange', route);
  route();
}

// scopeOf is the token scope a view needs (the API it calls answers 403 without it).
function scopeOf(name) {
  return $(`#nav a[data-view="${name}"]`).dataset.scope;
}

function route() {
  const s = session();
  if (!s) {
    if (signedIn) {
      // The session ended in this page: start afresh so nothing of it stays on screen.
      reloadAt('');
      return;
    }
    showSignIn();
    return;
  }
  signedIn = true;
  $('#nav').hidden = false;
  $('#who').hidden = false;
  $('#who-name').textContent = `Signed in as ${s.clientId}`;
  const allowed = Object.keys(views).filter((name) => s.scopes.includes(scopeOf(name)));
  for (const a of $$('#nav a')) a.hidden = !allowed.includes(a.dataset.view);
  const asked = (/^#\/(\w+)/.exec(location.hash) || [])[1];
  const name = allowed.includes(asked) ? asked : allowed[0];
  if (!name) {
    showSection('signin');
    notice($('#signin-error'), 'This client has none of the scopes the console needs (tracking, push or integrations).', 'error');
    return;
  }
  if (location.hash !== '#/' + name) history.replaceState(null, '', '#/' + name);
  if (current === name) return;
  if (current) views[current].hide();
  current = name;
  showSection(name);
  for (const a of $$('#nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${$(`#nav a[data-view="${name}"]`).textContent} · Gateway console`;
  $(`#view-${name} h1`).focus();
  views[name].show();
  const left = s.expiresAt - Date.now();
  clearTimeout(route.expiry);
  route.expiry = setTimeout(() => { endSession('Your session expired; sign in again.'); route(); }, left);
}

function showSection(name) {
  for (const sec of $$('main > section.view')) sec.hidden = sec.id !== 'view-' + name;
}

function showSignIn() {
  $('#nav').hidden = true;
  $('#who').hidden = true;
  showSection('signin');
  document.title = 'Sign in · Gateway console';
  const flash = takeFlash();
  if (flash) notice($('#signin-error'), flash, 'error');
  $('#signin-id').focus();
}

async function onSignIn(e) {
  e.preventDefault();
  const id = $('#signin-id').value.trim();
  const secretInput = $('#signin-secret');
  const button = $('#signin-form button[type=submit]');
  button.disabled = true;
  try {
    await signIn(id, secretInput.value);
  } catch (err) {
    notice($('#signin-error'), err.message, 'error');
    secretInput.focus();
    secretInput.select();
    return;
  } finally {
    button.disabled = false;
  }
  secretInput.value = '';
  notice($('#signin-error'), '');
  route();
}

function signOut() {
  endSession();
  for (const k of Object.keys(sessionStorage)) {
    if (k.startsWith('gateway-console.')) sessionStorage.removeItem(k);
  }
  reloadAt('');
}

// reloadAt reloads the console at a hash route, dropping everything the page holds.
function reloadAt(hash) {
  history.replaceState(null, '', location.pathname + location.search + hash);
  location.reload();
}

start();
