// HTTP API: the access token lives in this module's memory only. The refresh token is an
// HttpOnly cookie the page never sees; refresh and logout carry the th_csrf cookie's value
// in X-CSRF-Token. Any 401 refreshes once and retries.

const DEVICE_KEY = 'th_device_id'; // not a secret: the tab's device identity

let access = null;
let refreshing = null;
let renewTimer = 0;
const listeners = { login: [], logout: [] };

export const session = {
  user: '',
  deviceId: localStorage.getItem(DEVICE_KEY) || '',
};

export class ApiError extends Error {
  constructor(status, code, message, extra) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
    this.extra = extra || {};
  }
}

export function on(event, fn) {
  listeners[event].push(fn);
}

function emit(event, arg) {
  for (const fn of listeners[event]) fn(arg);
}

export function accessToken() {
  return access;
}

function csrfCookie() {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === 'th_csrf') return decodeURIComponent(v.join('='));
  }
  return '';
}

async function errorOf(res) {
  let code = '';
  let message = '';
  let extra = {};
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || '';
      message = body.error.message || '';
      extra = body.error;
    }
  } catch (_) { /* not JSON */ }
  return new ApiError(res.status, code, message, extra);
}

function adopt(body) {
  access = body.access_token;
  if (body.user) session.user = body.user;
  if (body.device_id) {
    session.deviceId = body.device_id;
    localStorage.setItem(DEVICE_KEY, body.device_id);
  }
  clearTimeout(renewTimer);
  const inS = Math.max(30, Number(body.expires_in || 900) * 0.8);
  renewTimer = setTimeout(() => { refresh().catch(() => {}); }, inS * 1000);
  emit('login', body);
}

async function postJson(path, body, headers = {}) {
  return fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/** Log in with user and password; throws ApiError (401 on a wrong password). */
export async function login(user, password, deviceName, nameIsDefault) {
  const body = { user, password, device_name: deviceName, device_name_default: !!nameIsDefault };
  if (session.deviceId) body.device_id = session.deviceId;
  const res = await postJson('/v1/auth/web/login', body);
  if (!res.ok) throw await errorOf(res);
  adopt(await res.json());
}

/** Renew the access token from the refresh cookie; false when there is no login. */
export function refresh() {
  if (!csrfCookie()) return Promise.resolve(false); // never logged in here (or logged out)
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const res = await postJson('/v1/auth/web/refresh', {}, { 'X-CSRF-Token': csrfCookie() });
        if (res.status === 401 || res.status === 403) {
          access = null;
          return false;
        }
        if (!res.ok) throw await errorOf(res);
        adopt(await res.json());
        return true;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

export async function logout() {
  try {
    // Always: the refresh cookie is what logs this browser in, token in memory or not.
    const headers = { 'X-CSRF-Token': csrfCookie() };
    if (access) headers.Authorization = `Bearer ${access}`;
    await postJson('/v1/auth/web/logout', {}, headers);
  } finally {
    forget();
  }
}

/** Drop the login here (after a logout, a revocation or a refused refresh). */
export function forget() {
  access = null;
  clearTimeout(renewTimer);
  emit('logout');
}

/** Any /v1/ call with the access token; a 401 refreshes once and retries. */
export async function api(method, path, body, { signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = {};
    if (access) headers.Authorization = `Bearer ${access}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'same-origin',
    });
    if (res.status === 401 && attempt === 0) {
      if (await refresh()) continue;
      forget();
    }
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }
}

export const get = (path, opts) => api('GET', path, undefined, opts);

// --- device code login -----------------------------------------------------------

export async function deviceCodeStart(deviceName, nameIsDefault) {
  const body = { device_name: deviceName, device_name_default: !!nameIsDefault, device_kind: 'web' };
  if (session.deviceId) body.device_id = session.deviceId;
  const res = await postJson('/v1/auth/device', body);
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** One poll: 'ok' once approved (logged in), 'pending' or 'slow_down'; throws otherwise. */
export async function deviceCodePoll(deviceCode) {
  const res = await postJson('/v1/auth/web/device/token', { device_code: deviceCode });
  if (res.ok) {
    adopt(await res.json());
    return 'ok';
  }
  const err = await errorOf(res);
  if (err.code === 'authorization_pending') return 'pending';
  if (err.code === 'slow_down') return 'slow_down';
  throw err;
}
