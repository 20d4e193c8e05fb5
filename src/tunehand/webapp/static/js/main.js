// tunehand web app: login, the channel, the tab as a device, now playing, the sections.

import * as API from './api.js';
import { Channel, backoff } from './channel.js';
import { Device } from './device.js';
import { Views } from './views.js';
import { $, icon, fmtTime, notice, randomId, defaultDeviceName } from './util.js';

const NAME_KEY = 'th_device_name';
const JOURNAL_MAX_AGE_MS = 120000;
const JOURNAL_MAX = 200;
const ANYWHERE_OPS = new Set(['queue_add', 'queue_next', 'queue_remove', 'queue_move', 'order_move', 'queue_clear']);

const mirror = { state: null, track: null, next_track: null, devices: [] };
let helloSeen = false;
let journal = [];
const pending = new Map();
let current = 'library';
let dragging = false;
let codePoll = 0;

function deviceName() {
  return localStorage.getItem(NAME_KEY) || defaultDeviceName();
}

/** True while the tab goes by its made-up default name: the server makes it unique. */
function nameIsDefault() {
  return !localStorage.getItem(NAME_KEY);
}

const channel = new Channel({
  token: () => API.accessToken(),
  renew: () => API.refresh(),
  device: () => ({
    id: API.session.deviceId, name: deviceName(), name_default: nameIsDefault(), capabilities: ['play', 'web'],
  }),
  lastVersion: () => (helloSeen && mirror.state ? mirror.state.version : null),
  onMessage: (msg) => onMessage(msg),
  onStatus: (up) => setOnline(up),
  onEnd: (reason, message) => onEnd(reason, message),
  active: () => device.mine(),
});

const device = new Device({
  audio: $('player'),
  mirror,
  sync: channel.sync,
  send: (msg) => channel.send(msg),
  id: () => API.session.deviceId,
  ui: {
    needGesture: (on) => {
      $('tap-to-play').hidden = !on;
      if (on) notice('This browser needs a tap before it plays: tap "Tap to play here".', { sticky: true });
    },
    said: (text, sticky = false) => notice(text, { sticky }),
    changed: () => renderNow(),
  },
});

const app = {
  command,
  deviceId: () => API.session.deviceId,
  state: () => mirror.state,
  devices: () => mirror.devices,
  show,
  pull: () => command('transfer', { device_id: API.session.deviceId }, 'moving playback here'),
  renamed: (id, name) => {
    mirror.devices = mirror.devices.map((d) => (d.id === id ? { ...d, name } : d));
    if (id === API.session.deviceId) {
      localStorage.setItem(NAME_KEY, name);
      $('this-device-name').textContent = name;
    }
    views.renderDevices();
  },
};
const views = new Views(app);

// Read-only hooks for the tests and the bench.
window.tunehand = {
  get deviceId() { return API.session.deviceId; },
  serverNow: () => channel.sync.serverMs(performance.now()),
  get offsetMs() { return channel.sync.offsetMs; },
  get rttMs() { return channel.sync.rttMs; },
  get state() { return mirror.state; },
  get version() { return mirror.state ? mirror.state.version : null; },
  positionMs: () => device.positionMs(),
  get switches() { return device.switches.slice(); },
  get startLatencyMs() { return device.startLatencyMs; },
};

// --- messages -----------------------------------------------------------------------

function takeState(msg, force = false) {
  if (!force && mirror.state && msg.version <= mirror.state.version) return false;
  mirror.state = msg.state;
  mirror.track = msg.track || null;
  mirror.next_track = msg.next_track || null;
  return true;
}

function onMessage(msg) {
  switch (msg.type) {
    case 'hello':
      helloSeen = true;
      if (msg.devices) onDevices({ devices: msg.devices, patch: false });
      if (msg.state) takeState(msg.state, true);
      replayJournal();
      afterState();
      views.renderDevices();
      break;
    case 'state':
      if (takeState(msg)) afterState();
      break;
    case 'devices':
      onDevices(msg);
      break;
    case 'directive':
      device.directive(msg);
      break;
    case 'result': {
      const p = pending.get(msg.command_id);
      pending.delete(msg.command_id);
      if (msg.code !== 'ok') notice(`refused: ${msg.message || msg.code}`);
      else if (p && p.okText) notice(p.okText);
      break;
    }
    case 'error':
      if (msg.code === 'stale_term') channel.send({ type: 'resync', last_version: mirror.state ? mirror.state.version : null });
      break;
    case 'bye':
      notice(msg.message || 'the server is going away; reconnecting');
      break;
    default:
      break;
  }
}

function onDevices(msg) {
  if (!msg.patch) {
    mirror.devices = msg.devices;
  } else {
    const changed = new Map(msg.devices.map((d) => [d.id, d]));
    const gone = new Set(msg.removed || []);
    const kept = mirror.devices.filter((d) => !gone.has(d.id)).map((d) => {
      const n = changed.get(d.id);
      changed.delete(d.id);
      return n || d;
    });
    mirror.devices = [...kept, ...[...changed.values()].filter((d) => !gone.has(d.id))];
  }
  const me = mirror.devices.find((d) => d.id === API.session.deviceId);
  if (me && me.name) {
    // The server's name for this tab wins (renamed here or from another device).
    $('this-device-name').textContent = me.name;
    if (me.name !== deviceName()) localStorage.setItem(NAME_KEY, me.name);
  }
  views.renderDevices();
  renderNow();
}

function afterState() {
  device.reconcile();
  views.queueChanged(mirror.state);
  views.renderQueue();
  views.renderDevices();
  renderNow();
}

// --- commands -----------------------------------------------------------------------

function command(op, fields = {}, okText = '') {
  const cmd = { op, command_id: randomId(), ...fields };
  pending.set(cmd.command_id, { op, okText });
  if (!channel.send({ type: 'command', command: cmd })) {
    journal.push({ t: performance.now(), cmd });
    journal = journal.slice(-JOURNAL_MAX);
    notice(`offline: ${op} will be sent when the server is back`);
  }
}

function replayJournal() {
  const now = performance.now();
  const kept = journal.filter((j) => ANYWHERE_OPS.has(j.cmd.op) || now - j.t < JOURNAL_MAX_AGE_MS);
  const dropped = journal.length - kept.length;
  journal = [];
  if (dropped) notice(`dropped ${dropped} command(s) made while offline too long ago`);
  for (const j of kept) channel.send({ type: 'command', command: j.cmd });
}

// --- now playing --------------------------------------------------------------------

let lastMeta = '';
let lastPosState = 0;

function renderNow() {
  const st = mirror.state;
  const t = mirror.track;
  const playing = !!(st && st.position && st.position.playing);
  $('now-title').textContent = t ? t.title : (st && st.current ? '…' : 'Nothing playing');
  $('now-artist').textContent = t ? t.artist : '';
  const active = st && st.active_device ? mirror.devices.find((d) => d.id === st.active_device) : null;
  $('now-device').textContent = active ? active.name : (st && st.active_device ? st.active_device : '');
  document.querySelector('.on-device').hidden = !(st && st.active_device);
  const pp = $('play-pause');
  const want = playing ? 'pause' : 'play';
  if (pp.dataset.icon !== want) {
    pp.dataset.icon = want;
    pp.replaceChildren(icon(want));
  }
  pp.setAttribute('aria-label', playing ? 'Pause' : 'Play');
  const art = $('now-art');
  if (t && t.art_url) {
    const src = `${t.art_url}&size=128`;
    if (art.getAttribute('src') !== src) art.src = src;
    art.hidden = false;
  } else {
    art.hidden = true;
  }
  renderPosition();
  mediaMeta(t, playing);
}

function renderPosition() {
  const st = mirror.state;
  const dur = mirror.track ? mirror.track.duration_ms : 0;
  const pos = st ? device.positionMs() : 0;
  const bar = $('seek-bar');
  if (!dragging) {
    if (Number(bar.max) !== dur) bar.max = String(dur);
    bar.value = String(Math.min(pos, dur || pos));
    $('now-position').textContent = fmtTime(pos);
  }
  $('now-duration').textContent = fmtTime(dur);
  bar.disabled = !st || !st.current;
  const vol = $('volume');
  if (st && document.activeElement !== vol && Number(vol.value) !== st.volume) vol.value = String(st.volume);
  const ms = navigator.mediaSession;
  if (ms && ms.setPositionState && dur > 0 && performance.now() - lastPosState > 1000) {
    lastPosState = performance.now();
    try {
      ms.setPositionState({ duration: dur / 1000, playbackRate: 1, position: Math.min(pos, dur) / 1000 });
    } catch (_) { /* a position past the end while the next state comes */ }
  }
}

function mediaMeta(t, playing) {
  const ms = navigator.mediaSession;
  if (!ms) return;
  ms.playbackState = t ? (playing ? 'playing' : 'paused') : 'none';
  const key = t ? `${t.id}|${t.art_url || ''}` : '';
  if (key === lastMeta || typeof MediaMetadata === 'undefined') return;
  lastMeta = key;
  ms.metadata = t ? new MediaMetadata({
    title: t.title,
    artist: t.artist,
    album: t.album,
    artwork: t.art_url ? [96, 256, 512].map((n) => ({ src: `${t.art_url}&size=${n}`, sizes: `${n}x${n}` })) : [],
  }) : null;
}

function mediaHandlers() {
  const ms = navigator.mediaSession;
  if (!ms) return;
  const set = (action, fn) => {
    try { ms.setActionHandler(action, fn); } catch (_) { /* not supported here */ }
  };
  set('play', () => playPause(true));
  set('pause', () => command('pause'));
  set('nexttrack', () => command('next'));
  set('previoustrack', () => command('prev'));
  set('seekto', (d) => command('seek', { position_ms: Math.max(0, Math.floor(d.seekTime * 1000)) }));
}

function playPause(wantPlay = null) {
  const st = mirror.state;
  const playing = !!(st && st.position.playing);
  if (device.blocked && device.mine()) {
    device.tapToPlay(command);
    return;
  }
  if (wantPlay === false || (wantPlay === null && playing)) {
    command('pause');
  } else if (!st || !st.active_device) {
    command('play', { device_id: API.session.deviceId });
  } else {
    command('play');
  }
}

// --- connection and screens ---------------------------------------------------------

function setOnline(up) {
  const el = $('connection-status');
  el.textContent = up ? 'online' : 'offline';
  el.classList.toggle('online', up);
  el.classList.toggle('offline', !up);
}

function onEnd(reason, message) {
  setOnline(false);
  if (reason === 'logged_out' || reason === 'revoked') {
    device.stopEl();
    notice(message, { sticky: true });
    API.forget();
    return;
  }
  device.stopEl();
  notice(reason === 'replaced' ? 'Another tab of this browser plays as this device now.' : message, { sticky: true });
  $('reclaim').textContent = reason === 'replaced' ? 'Use this tab' : 'Try again';
  $('reclaim').hidden = false;
}

function show(view) {
  current = view;
  for (const sec of document.querySelectorAll('.view')) sec.hidden = sec.id !== `view-${view}`;
  for (const b of document.querySelectorAll('.nav button')) b.classList.toggle('active', b.dataset.view === view);
}

function open(view) {
  show(view);
  if (view === 'library') views.library();
  else if (view === 'search') $('search-input').focus();
  else if (view === 'playlists') views.playlists();
  else if (view === 'liked') views.likedView();
  else if (view === 'history') views.historyView();
  else if (view === 'queue') views.renderQueue();
  else if (view === 'devices') views.renderDevices();
}

function showLogin(error = '') {
  $('app').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.textContent = error;
  err.hidden = !error;
  $('login-user').focus();
}

function startApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('reclaim').hidden = true;
  stopCodePoll();
  $('this-device-name').textContent = deviceName();
  helloSeen = false;
  channel.start();
  views.loadLikes();
  open(current);
}

function stopCodePoll() {
  clearTimeout(codePoll);
  codePoll = 0;
  $('code-box').hidden = true;
}

async function codeLogin() {
  stopCodePoll();
  $('login-error').hidden = true;
  let started;
  try {
    started = await API.deviceCodeStart(deviceName(), nameIsDefault());
  } catch (err) {
    showLogin(`cannot start a code login: ${err.message}`);
    return;
  }
  $('code').textContent = started.user_code;
  const link = $('code-url');
  link.href = started.verification_uri_complete || started.verification_uri;
  link.textContent = started.verification_uri;
  $('code-status').textContent = 'Waiting for approval…';
  $('code-box').hidden = false;
  let interval = Math.max(1, Number(started.interval || 5));
  const deadline = performance.now() + Number(started.expires_in || 600) * 1000;
  const poll = async () => {
    if (performance.now() > deadline) {
      stopCodePoll();
      showLogin('The code expired: start again.');
      return;
    }
    try {
      const r = await API.deviceCodePoll(started.device_code);
      if (r === 'ok') {
        startApp();
        return;
      }
      if (r === 'slow_down') interval += 5;
    } catch (err) {
      stopCodePoll();
      showLogin(err.code === 'access_denied' ? 'The code was refused.' :
        err.code === 'expired_token' ? 'The code expired: start again.' : err.message);
      return;
    }
    if (codePoll) codePoll = setTimeout(poll, interval * 1000);
  };
  codePoll = setTimeout(poll, interval * 1000);
}

function wire() {
  $('prev').replaceChildren(icon('prev'));
  $('next').replaceChildren(icon('next'));
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = ev.submitter || document.querySelector('[data-testid="login-submit"]');
    btn.disabled = true;
    try {
      await API.login($('login-user').value.trim(), $('login-password').value, deviceName(), nameIsDefault());
      $('login-password').value = '';
      startApp();
    } catch (err) {
      showLogin(err.status === 401 ? 'Wrong user name or password.' :
        err.status === 429 ? 'Too many attempts: wait a moment.' : (err.message || 'cannot log in'));
    } finally {
      btn.disabled = false;
    }
  });
  $('login-code').addEventListener('click', codeLogin);
  $('code-cancel').addEventListener('click', stopCodePoll);
  $('logout').addEventListener('click', () => API.logout());
  $('reclaim').addEventListener('click', () => {
    $('reclaim').hidden = true;
    notice('');
    channel.start();
  });
  for (const b of document.querySelectorAll('.nav button')) b.addEventListener('click', () => open(b.dataset.view));
  $('play-pause').addEventListener('click', () => playPause());
  $('next').addEventListener('click', () => command('next'));
  $('prev').addEventListener('click', () => command('prev'));
  $('tap-to-play').addEventListener('click', () => device.tapToPlay(command));
  const bar = $('seek-bar');
  bar.addEventListener('input', () => {
    dragging = true;
    $('now-position').textContent = fmtTime(Number(bar.value));
  });
  bar.addEventListener('change', () => {
    dragging = false;
    command('seek', { position_ms: Math.floor(Number(bar.value)) });
  });
  document.addEventListener('keydown', (ev) => {
    // Keys as in `resume`, when no field or button has the focus (they keep their own).
    if (ev.ctrlKey || ev.metaKey || ev.altKey || $('app').hidden) return;
    if (ev.target instanceof Element && ev.target.closest('input, textarea, select, button, a')) return;
    const act = {
      ' ': () => playPause(),
      ArrowRight: () => command('seek', { delta_ms: 5000 }),
      ArrowLeft: () => command('seek', { delta_ms: -5000 }),
      n: () => command('next'),
      p: () => command('prev'),
      '/': () => open('search'),
    }[ev.key];
    if (act) {
      ev.preventDefault();
      act();
    }
  });
  const vol = $('volume');
  vol.addEventListener('change', () => command('volume', { value: Math.round(Number(vol.value)) }));
  API.on('logout', () => {
    channel.stop();
    device.stopEl();
    mirror.state = null;
    mirror.devices = [];
    showLogin();
  });
  setInterval(renderPosition, 250);
  mediaHandlers();
  if ('serviceWorker' in navigator && window.isSecureContext) {
    navigator.serviceWorker.register('/sw.js').catch(() => { /* the app works without it */ });
  }
}

const bootDelays = backoff(1000, 15000);

async function resumeLogin() {
  try {
    if (await API.refresh()) {
      startApp();
      return;
    }
    showLogin();
  } catch (err) {
    // The server is unreachable (or the network is down): say so, and try again.
    showLogin(`cannot reach the server (${err.message}); trying again`);
    setTimeout(() => { if ($('app').hidden) resumeLogin(); }, bootDelays.next().value);
  }
}

function boot() {
  wire();
  resumeLogin();
}

boot();
