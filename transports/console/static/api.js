// The console's only way to the gateway: its public APIs, with the signed-in client's token.
// The token lives in sessionStorage, so it belongs to this tab and is forgotten when the tab
// closes or the user signs out. It is sent only in the Authorization header, never in a URL.

const SESSION_KEY = 'gateway-console.session';
const FLASH_KEY = 'gateway-console.flash';

// apiURL resolves an API path against the console's own location (/console/), so the console
// keeps working when the gateway sits behind a reverse proxy under a path prefix.
export function apiURL(path) {
  return new URL('..' + path, document.baseURI).toString();
}

// ApiError is a failed call: status is the HTTP status (0 when the gateway could not be
// reached), message the gateway's own explanation.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// session returns {token, clientId, scopes, expiresAt} of the signed-in client, or null.
export function session() {
  let s;
  try {
    s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    s = null;
  }
  if (!s || typeof s.token !== 'string') return null;
  if (Date.now() >= s.expiresAt) {
    endSession('Your session expired; sign in again.');
    return null;
  }
  return s;
}

export function hasScope(scope) {
  const s = session();
  return !!s && s.scopes.includes(scope);
}

// endSession forgets the token; message, if given, is shown on the sign-in page.
export function endSession(message) {
  sessionStorage.removeItem(SESSION_KEY);
  if (message) sessionStorage.setItem(FLASH_KEY, message);
}

// takeFlash returns (once) the message left by endSession.
export function takeFlash() {
  const m = sessionStorage.getItem(FLASH_KEY);
  sessionStorage.removeItem(FLASH_KEY);
  return m;
}

// signIn exchanges client credentials for a token (OAuth2 client credentials, secret in the
// form body as client_secret_post) and starts the session.
export async function signIn(clientId, secret) {
  const form = new URLSearchParams({grant_type: 'client_credentials', client_id: clientId, client_secret: secret});
  let resp;
  try {
    resp = await fetch(apiURL('/connect/token'), {
      method: 'POST', body: form, cache: 'no-store', credentials: 'omit',
      headers: {Accept: 'application/json'},
    });
  } catch (e) {
    throw new ApiError(0, 'The gateway could not be reached: ' + e.message);
  }
  const body = await readJSON(resp);
  if (!resp.ok) {
    if (resp.status === 401) throw new ApiError(401, 'Unknown client id or wrong secret.');
    throw new ApiError(resp.status, messageOf(body, resp));
  }
  const s = {
    token: body.access_token,
    clientId,
    scopes: String(body.scope || '').split(' ').filter(Boolean),
    // Renew a little before the gateway would refuse the token.
    expiresAt: Date.now() + Math.max(0, (Number(body.expires_in) || 3600) - 30) * 1000,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  return s;
}

// api calls the gateway as the signed-in client and returns the parsed JSON body (null for
// an empty one). A 401 ends the session and reloads the console on its sign-in page; any
// other failure throws ApiError with the gateway's message.
export async function api(method, path, body, {signal} = {}) {
  const s = session();
  if (!s) {
    location.reload();
    throw new ApiError(401, 'Not signed in.');
  }
  const headers = {Authorization: 'Bearer ' + s.token, Accept: 'application/json'};
  const init = {method, headers, cache: 'no-store', credentials: 'omit', signal};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(apiURL(path), init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The gateway could not be reached: ' + e.message);
  }
  const data = await readJSON(resp);
  if (resp.status === 401) {
    endSession('The gateway no longer accepts your session; sign in again.');
    location.reload();
    throw new ApiError(401, 'Signed out.');
  }
  if (!resp.ok) throw new ApiError(resp.status, messageOf(data, resp));
  return data;
}

// fetchPublic reads an endpoint that needs no credentials (health, metrics); the token is not
// sent. It resolves to {status, contentType, text}, never throws for an HTTP status.
export async function fetchPublic(path) {
  const resp = await fetch(apiURL(path), {cache: 'no-store', credentials: 'omit'});
  return {status: resp.status, contentType: resp.headers.get('Content-Type') || '', text: await resp.text()};
}

async function readJSON(resp) {
  const text = await resp.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return {message: text.slice(0, 300)};
  }
}

// messageOf finds the human-readable message in the gateway's error bodies: its own
// {"error", "message"}, tracking's {"error": {"message"}}, OAuth's error_description.
function messageOf(body, resp) {
  if (body) {
    if (typeof body.error_description === 'string') return body.error_description;
    if (body.error && typeof body.error.message === 'string') return body.error.message;
    if (typeof body.message === 'string') return body.message;
    if (typeof body.error === 'string') return body.error;
  }
  return `${resp.status} ${resp.statusText}`.trim();
}
