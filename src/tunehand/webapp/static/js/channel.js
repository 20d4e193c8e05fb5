// The device's websocket to /v1/channel: auth as the first message, hello, time sync,
// reconnect with jittered exponential backoff for ever (close codes decide otherwise).

const KEEP = 16; // time samples kept
const BEST = 4; // lowest-delay samples the offset comes from
const COARSE_DELAY_MS = 10000;
const TIME_BURST = 5;
const TIME_EVERY_ACTIVE_MS = 10000;
const TIME_EVERY_IDLE_MS = 60000;
const PING_EVERY_MS = 10000;
const SILENT_LIMIT_MS = 25000; // nothing heard for this long: the connection is dead
const REAUTH_EVERY_MS = 30000;

export const CLOSE_AUTH = 4001;
export const CLOSE_EXPIRED = 4002;
export const CLOSE_REVOKED = 4003;
export const CLOSE_REPLACED = 4009;
export const CLOSE_TOO_MANY = 4010;

/** Clock offset to the server from NTP-style exchanges (as core/timesync.py). */
export class TimeSync {
  constructor() {
    this.samples = [];
  }

  add(offsetMs, delayMs) {
    this.samples.push({ offsetMs, delayMs });
    if (this.samples.length > KEEP) this.samples.splice(0, this.samples.length - KEEP);
  }

  addExchange(t0, t1, t2, t3) {
    this.add(((t1 - t0) + (t2 - t3)) / 2, Math.max(0, (t3 - t0) - (t2 - t1)));
  }

  get ready() {
    return this.samples.length > 0;
  }

  /** server clock - performance.now(), from the lowest-delay samples. */
  get offsetMs() {
    if (!this.samples.length) return 0;
    const best = [...this.samples].sort((a, b) => a.delayMs - b.delayMs).slice(0, BEST);
    const offs = best.map((s) => s.offsetMs).sort((a, b) => a - b);
    return offs[Math.floor(offs.length / 2)];
  }

  get rttMs() {
    return this.samples.length ? Math.min(...this.samples.map((s) => s.delayMs)) : 0;
  }

  serverMs(localMs = performance.now()) {
    return Math.floor(localMs + this.offsetMs);
  }

  localMs(serverMs) {
    return serverMs - this.offsetMs;
  }
}

/** Jittered exponential backoff (as core/backoff.py): full jitter over a growing cap. */
export function* backoff(initial = 250, maximum = 15000) {
  let cap = Math.min(initial, maximum);
  for (;;) {
    yield cap / 2 + Math.random() * (cap / 2);
    cap = Math.min(cap * 2, maximum);
  }
}

export class Channel {
  /**
   * opts: token() -> access token (or null), renew() -> Promise<bool> (refresh the
   * login), device() -> {id, name, capabilities}, lastVersion() -> int|null,
   * onMessage(msg), onStatus(online: bool), onEnd(reason: 'revoked'|'replaced'|'too_many'|
   * 'logged_out', message), active() -> bool (this device plays: sync the clock more often).
   */
  constructor(opts) {
    this.opts = opts;
    this.sync = new TimeSync();
    this.ws = null;
    this.connected = false;
    this.stopped = true;
    this.delays = backoff();
    this.timers = [];
    this.retryTimer = 0;
    this.lastHeard = 0;
    this.sentToken = null;
  }

  start() {
    this.stopped = false;
    this.delays = backoff();
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.drop();
  }

  url() {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/channel`;
  }

  connect() {
    if (this.stopped) return;
    const token = this.opts.token();
    if (!token) {
      this.opts.renew().then((ok) => {
        if (ok) this.connect();
        else this.end('logged_out', 'logged out: log in again');
      }, () => this.retry());
      return;
    }
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (_) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.sentToken = token;
      ws.send(JSON.stringify({
        type: 'auth', token, device: this.opts.device(), last_version: this.opts.lastVersion(),
      }));
      this.lastHeard = performance.now();
    };
    ws.onmessage = (ev) => this.receive(ws, ev.data);
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
    ws.onerror = () => { /* onclose follows */ };
  }

  receive(ws, raw) {
    if (ws !== this.ws) return;
    this.lastHeard = performance.now();
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (_) {
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    if (msg.type === 'hello') {
      if (!this.sync.ready) {
        this.sync.add(msg.server_time_ms - performance.now(), COARSE_DELAY_MS);
      }
      if (!this.connected) {
        this.connected = true;
        this.delays = backoff();
        this.startTimers(ws);
      }
      this.opts.onMessage(msg);
      this.opts.onStatus(true);
      this.timeBurst();
      return;
    }
    if (msg.type === 'time') {
      this.sync.addExchange(msg.t0, msg.t1, msg.t2, performance.now());
      return;
    }
    if (msg.type === 'error' && msg.code === 'unauthorized') {
      this.end('logged_out', `logged out (${msg.message}): log in again`);
      return;
    }
    this.opts.onMessage(msg);
  }

  startTimers(ws) {
    this.clearTimers();
    const every = (ms, fn) => this.timers.push(setInterval(fn, ms));
    every(PING_EVERY_MS, () => {
      if (performance.now() - this.lastHeard > SILENT_LIMIT_MS) {
        this.drop();
        this.retry();
        return;
      }
      this.send({ type: 'ping' });
    });
    let lastTime = performance.now();
    every(1000, () => {
      const wait = this.opts.active() ? TIME_EVERY_ACTIVE_MS : TIME_EVERY_IDLE_MS;
      if (performance.now() - lastTime >= wait) {
        lastTime = performance.now();
        this.send({ type: 'time', t0: performance.now() });
      }
    });
    every(REAUTH_EVERY_MS, () => {
      const token = this.opts.token();
      if (token && token !== this.sentToken && ws === this.ws && this.connected) {
        this.sentToken = token;
        this.send({ type: 'auth', token, device: this.opts.device() });
      }
    });
  }

  clearTimers() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  timeBurst() {
    for (let i = 0; i < TIME_BURST; i++) {
      setTimeout(() => this.send({ type: 'time', t0: performance.now() }), i * 20);
    }
  }

  /** Send if connected; false when there is no connection right now. */
  send(msg) {
    const ws = this.ws;
    if (!ws || !this.connected || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(msg));
    } catch (_) {
      return false;
    }
    return true;
  }

  drop() {
    const ws = this.ws;
    this.ws = null;
    this.clearTimers();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (_) { /* already closed */ }
    }
    this.lost();
  }

  lost() {
    if (this.connected) {
      this.connected = false;
      this.opts.onStatus(false);
    } else {
      this.opts.onStatus(false);
    }
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.clearTimers();
    this.lost();
    if (this.stopped) return;
    if (code === CLOSE_AUTH || code === CLOSE_EXPIRED) {
      // Refresh the login, then reconnect; a refused refresh means logged out.
      this.opts.renew().then((ok) => {
        if (ok) this.retry(code === CLOSE_EXPIRED);
        else this.end('logged_out', 'logged out: log in again');
      }, () => this.retry());
      return;
    }
    if (code === CLOSE_REVOKED) {
      this.end('revoked', reason || 'this device was logged out');
      return;
    }
    if (code === CLOSE_REPLACED) {
      this.end('replaced', 'another tab of this browser is this device now');
      return;
    }
    if (code === CLOSE_TOO_MANY) {
      this.end('too_many', reason || 'too many devices online');
      return;
    }
    this.retry();
  }

  retry(now = false) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), now ? 0 : this.delays.next().value);
  }

  end(reason, message) {
    this.stopped = true;
    this.drop();
    this.opts.onEnd(reason, message);
  }
}
