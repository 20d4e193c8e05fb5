// The tab as a playing device, through the page's one <audio id="player">, following
// src/tunehand/client/agent.py: it makes the element match the session while this tab
// holds playback ({active_device, term}), reports the audible position on every
// discontinuity and every 5 s (fenced by term), and carries out the transfer directives
// (prepare: load and seek paused, answer ready/failed; start/stop at the server instant,
// with the clock offset measured over the channel).

const REPORT_EVERY_MS = 5000;
const DRIFT_CHECK_MS = 100;
const DRIFT_MS = 10; // re-anchor the session when the audible position is this far off
const DRIFT_REPORT_GAP_MS = 500;
const LATE_SEEK_MS = 20; // a start this late seeks ahead; less, it plays on from P
const SPIN_MS = 4; // timers fire late by a few ms: wake up this early, then wait exactly
const SEEK_TOLERANCE_MS = 300;
const START_SEEK_MS = 3;
const HOLD_PREPARED_MS = 5000;

function positionAt(pos, nowMs, durationMs) {
  if (!pos) return 0;
  let p = pos.position_ms;
  if (pos.playing && pos.rate > 0) p += Math.max(0, nowMs - pos.at_ms) * pos.rate;
  if (durationMs > 0) p = Math.min(p, durationMs);
  return Math.max(0, Math.floor(p));
}

export { positionAt };

/** setTimeout through a worker (not throttled in a hidden tab); the page's own timer
 * where workers are not available. */
class Timers {
  constructor() {
    this.next = 1;
    this.waiting = new Map();
    try {
      this.worker = new Worker('/app/js/timer-worker.js');
      this.worker.onmessage = (ev) => {
        const fn = this.waiting.get(ev.data);
        this.waiting.delete(ev.data);
        if (fn) fn();
      };
      this.worker.onerror = () => { this.worker = null; };
    } catch (_) {
      this.worker = null;
    }
  }

  after(delay, fn) {
    if (!this.worker) {
      setTimeout(fn, delay);
      return;
    }
    const id = this.next++;
    this.waiting.set(id, fn);
    this.worker.postMessage({ id, delay });
  }
}

export class Device {
  /**
   * audio: the <audio> element; mirror: {state, track} (the server's, in version order);
   * sync: TimeSync; send(msg) -> bool; id(): this device's id; ui: {needGesture(on),
   * said(text), changed()}.
   */
  constructor({ audio, mirror, sync, send, id, ui }) {
    this.audio = audio;
    this.mirror = mirror;
    this.sync = sync;
    this.send = send;
    this.id = id;
    this.ui = ui;
    this.tag = null; // the entry the element holds
    this.settling = null; // the entry being loaded or seeked (its position means nothing yet)
    this.gen = 0;
    this.preparing = null; // {transferId, entryId}
    this.holding = false;
    this.holdingSince = 0;
    this.directiveTerm = 0;
    this.switching = 0;
    this.lastReport = null;
    this.lastAnchor = null;
    this.lastPosition = null;
    this.driftAt = 0;
    this.ourPause = false; // the pause event that follows is ours
    this.blocked = false; // play() refused for lack of a gesture
    this.hiddenPaused = false;
    this.timers = new Timers();
    this.switches = []; // the last switches carried out (for the tests and the bench)
    this.startLatencyMs = 0; // play() -> audible, learned from each start (currentTime's line)
    this.bind();
    setInterval(() => this.periodic(), REPORT_EVERY_MS);
    setInterval(() => this.checkDrift(), DRIFT_CHECK_MS);
  }

  serverNow() {
    return this.sync.serverMs(performance.now());
  }

  mine() {
    return this.mirror.state && this.mirror.state.active_device === this.id();
  }

  /** The audible position here when this tab plays the current entry, else the session's. */
  positionMs() {
    const st = this.mirror.state;
    if (!st) return 0;
    if (this.mine() && this.tag && this.tag === st.current && this.settling !== this.tag) {
      return Math.floor(this.audio.currentTime * 1000);
    }
    const cur = (st.queue || []).find((e) => e.entry_id === st.current);
    return positionAt(st.position, this.serverNow(), cur ? cur.duration_ms : 0);
  }

  // --- the element ----------------------------------------------------------------

  bind() {
    const a = this.audio;
    a.addEventListener('playing', () => {
      if (this.mine() && this.tag && this.tag !== this.settling && !this.switching) {
        this.lastReport = null;
        this.report(true);
      }
      this.ui.changed();
    });
    a.addEventListener('waiting', () => {
      // Buffering: nothing audible, so observers hold the clock (rate 0).
      if (this.mine() && this.tag && this.tag !== this.settling && !this.switching) {
        this.sendReport(Math.floor(a.currentTime * 1000), this.serverNow(), true, 0, this.tag);
      }
    });
    a.addEventListener('pause', () => {
      if (this.ourPause) {
        this.ourPause = false;
        return;
      }
      if (this.tag && this.mine() && this.tag !== this.settling && !a.ended) {
        // Not ours: the browser paused it (a background tab, a headset, the OS).
        if (document.hidden) {
          this.hiddenPaused = true;
          this.ui.said('The browser paused playback while this tab was hidden.', true);
        } else {
          this.ui.said('Playback was paused outside the app.', true);
        }
        this.lastReport = null;
        this.report(false);
      }
      this.ui.changed();
    });
    a.addEventListener('ended', () => {
      if (this.tag) this.report(false, 'ended', this.tag);
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.hiddenPaused) {
        this.hiddenPaused = false;
        this.ui.said('The browser paused playback while this tab was hidden: press play to go on.', true);
      }
    });
  }

  pauseEl() {
    if (!this.audio.paused) {
      this.ourPause = true;
      this.audio.pause();
    }
  }

  stopEl() {
    this.gen++;
    this.pauseEl();
    this.tag = null;
    this.settling = null;
    this.audio.removeAttribute('src');
    this.audio.load();
    this.ourPause = false; // the load dropped the pause event still queued
    this.ui.needGesture(false);
  }

  /** play(); a refusal for lack of a gesture shows "Tap to play here" (never silent). */
  async playEl() {
    try {
      await this.audio.play();
      this.blocked = false;
      this.ui.needGesture(false);
      return true;
    } catch (err) {
      if (err && err.name === 'NotAllowedError') {
        this.blocked = true;
        this.ui.needGesture(true);
        // Truthfully: nothing plays here until the tap.
        if (this.mine() && this.tag) {
          this.lastReport = null;
          this.report(false);
        }
      } else if (err && err.name !== 'AbortError') {
        this.ui.said(`cannot play here: ${err.message || err.name}`);
      }
      return false;
    }
  }

  /** The user tapped "Tap to play here": play now (the gesture), resume the session. */
  async tapToPlay(command) {
    const ok = await this.playEl();
    if (ok && this.mine() && !this.mirror.state.position.playing) command('play');
  }

  /** Load `url` as entry `tag` at `posMs`; Ready (or Failed) when it is waiting there. */
  load(tag, url, posMs, paused) {
    const a = this.audio;
    const gen = ++this.gen;
    this.tag = tag;
    this.settling = tag;
    this.pauseEl();
    a.src = url;
    this.ourPause = false; // the load dropped the pause event still queued
    const wait = (name) => new Promise((resolve, reject) => {
      const ok = () => { off(); resolve(); };
      const bad = () => { off(); reject(new Error(a.error ? `media error ${a.error.code}` : 'cannot load')); };
      const off = () => { a.removeEventListener(name, ok); a.removeEventListener('error', bad); };
      a.addEventListener(name, ok);
      a.addEventListener('error', bad);
    });
    (async () => {
      if (a.readyState < 1) await wait('loadedmetadata');
      if (gen !== this.gen) return;
      if (posMs > 0) {
        const seeked = wait('seeked');
        a.currentTime = posMs / 1000;
        await seeked;
      }
      if (gen !== this.gen) return;
      if (a.readyState < 3) await wait('canplay');
      if (gen !== this.gen) return;
      this.settling = null;
      if (!paused && !this.preparing) {
        // Loaded and waiting (canplay): a start here takes what a handoff's start takes,
        // so the first pull into this tab knows its output's delay already.
        const t0 = performance.now();
        const p0 = a.currentTime * 1000;
        if (await this.playEl()) this.learnStart(t0, p0);
      }
      if (gen !== this.gen) return;
      this.onReady(tag);
    })().catch((err) => {
      if (gen !== this.gen) return;
      this.settling = null;
      this.onFailed(tag, err.message || 'cannot load');
    });
  }

  seekEl(posMs) {
    const a = this.audio;
    const gen = this.gen;
    const tag = this.tag;
    this.settling = tag;
    const done = () => {
      a.removeEventListener('seeked', done);
      if (gen !== this.gen) return;
      this.settling = null;
      this.onReady(tag);
    };
    a.addEventListener('seeked', done);
    a.currentTime = posMs / 1000;
  }

  onReady(tag) {
    if (this.preparing && tag === this.preparing.entryId) {
      const transferId = this.preparing.transferId;
      this.preparing = null;
      this.holding = true;
      this.holdingSince = performance.now();
      // start_ms: the server plans the switch far enough ahead for play() to be called
      // this early (the element's output takes that long to sound).
      this.send({ type: 'ready', transfer_id: transferId, start_ms: Math.round(this.startLatencyMs) });
      return;
    }
    if (this.mine() && !this.switching && tag === this.mirror.state.current) {
      this.lastReport = null;
      this.reconcile();
      this.report(!this.audio.paused);
    }
    this.ui.changed();
  }

  onFailed(tag, message) {
    if (this.preparing && tag === this.preparing.entryId) {
      this.send({ type: 'failed', transfer_id: this.preparing.transferId, message });
      this.preparing = null;
      this.stopEl();
      return;
    }
    this.ui.said(`cannot play this track here: ${message}; skipping`);
    this.report(false, 'error', tag);
  }

  // --- following the session ------------------------------------------------------

  reconcile() {
    const st = this.mirror.state;
    if (!st) return;
    if (st.term < this.directiveTerm || this.switching) return;
    if (!this.mine()) {
      if (performance.now() - this.holdingSince > HOLD_PREPARED_MS) {
        this.holding = false;
        this.preparing = null;
      }
      if (this.tag && !this.preparing && !this.holding) {
        this.stopEl();
        this.ui.said('playback moved to another device');
      }
      if (!this.tag) this.ui.needGesture(false);
      return;
    }
    const vol = Math.max(0, Math.min(100, st.volume)) / 100;
    if (this.audio.volume !== vol) this.audio.volume = vol;
    const cur = (st.queue || []).find((e) => e.entry_id === st.current);
    if (!cur) {
      if (this.tag) this.stopEl();
      return;
    }
    const track = this.mirror.track;
    const anchorKey = `${st.position.position_ms}@${st.position.at_ms}`;
    const external = anchorKey !== this.lastAnchor;
    const want = positionAt(st.position, this.serverNow(), cur.duration_ms);
    if (this.tag !== cur.entry_id) {
      if (!track || !track.url) return;
      this.lastAnchor = anchorKey;
      this.lastPosition = st.position;
      this.holding = false;
      this.lastReport = null;
      this.load(cur.entry_id, track.url, want, !st.position.playing);
      return;
    }
    if (this.settling === cur.entry_id) return; // applied on Ready
    const prev = this.lastPosition;
    this.lastPosition = st.position;
    this.lastAnchor = anchorKey;
    if (st.position.playing && this.audio.paused) {
      // Refused again without a gesture: reported, the button stays.
      const t0 = performance.now();
      const p0 = this.audio.currentTime * 1000;
      this.playEl().then((ok) => { if (ok) this.learnStart(t0, p0); });
    } else if (!st.position.playing && !this.audio.paused) {
      this.pauseEl();
      const moved = prev && Math.abs(positionAt(prev, st.position.at_ms, 0) - st.position.position_ms) > SEEK_TOLERANCE_MS;
      if (!moved) this.report(false);
    } else if (!st.position.playing && this.blocked) {
      // The session is paused: no gesture is needed until someone presses play.
    }
    const pos = Math.floor(this.audio.currentTime * 1000);
    if (external && Math.abs(pos - want) > SEEK_TOLERANCE_MS) {
      this.seekEl(want);
      return;
    }
    if (st.position.playing && st.position.rate === 0 && !this.audio.paused) {
      this.report(true); // audible, and the session waits for that
    }
  }

  report(playing, event = 'progress', entry = null) {
    if (!this.mine()) return;
    if (this.switching && event === 'progress') return;
    const st = this.mirror.state;
    const tag = entry || this.tag || st.current;
    if (event === 'progress' && (tag === this.settling || !this.tag)) return;
    const key = `${st.version}|${tag}|${playing}`;
    if (event === 'progress' && key === this.lastReport) return;
    this.lastReport = key;
    const rate = playing && !this.audio.paused ? this.audio.playbackRate : 0;
    this.sendReport(Math.floor(this.audio.currentTime * 1000), this.serverNow(), playing, rate, tag, event);
  }

  sendReport(positionMs, atMs, playing, rate, tag, event = 'progress') {
    const st = this.mirror.state;
    this.send({
      type: 'report',
      report: {
        term: Math.max(st.term, this.directiveTerm),
        entry_id: tag,
        position_ms: Math.max(0, positionMs),
        at_ms: atMs,
        playing,
        rate,
        event,
        version: st.version,
      },
    });
  }

  periodic() {
    if (this.mine() && this.tag && !this.audio.paused) {
      this.lastReport = null;
      this.report(true);
    }
  }

  checkDrift() {
    const st = this.mirror.state;
    if (!st || this.switching || !this.mine() || !st.position.playing) return;
    if (st.term < this.directiveTerm) return;
    if (!this.tag || this.tag !== st.current || this.tag === this.settling || this.audio.paused) return;
    if (st.position.rate === 0) return; // the 'playing' report is on its way
    const now = performance.now();
    if (now - this.driftAt < DRIFT_REPORT_GAP_MS) return;
    const actual = this.audio.currentTime * 1000;
    const cur = (st.queue || []).find((e) => e.entry_id === st.current);
    const serverNow = this.serverNow();
    const expected = positionAt(st.position, serverNow, cur ? cur.duration_ms : 0);
    if (Math.abs(actual - expected) > DRIFT_MS) {
      this.driftAt = now;
      this.sendReport(Math.floor(actual), serverNow, true, this.audio.playbackRate, this.tag);
    }
  }

  // --- transfer directives --------------------------------------------------------

  directive(d) {
    if (d.action === 'prepare') {
      if (!d.track || !d.track.url || !d.entry_id) {
        this.send({ type: 'failed', transfer_id: d.transfer_id, message: 'nothing to play' });
        return;
      }
      this.preparing = { transferId: d.transfer_id, entryId: d.entry_id };
      this.holdingSince = performance.now();
      this.load(d.entry_id, d.track.url, d.position_ms, true);
    } else if (d.action === 'start') {
      this.seekForStart(d);
      this.at(d, () => this.start(d), this.startLatencyMs);
    } else if (d.action === 'stop') {
      this.holding = false;
      this.at(d, () => this.stopForTransfer(d));
    }
  }

  /** Run fn at the directive's server time (at once if that has passed), then catch up. */
  at(d, fn, earlyMs = 0) {
    this.directiveTerm = Math.max(this.directiveTerm, d.term);
    this.switching++;
    const run = () => {
      this.switching--;
      fn();
      this.reconcile();
      this.ui.changed();
    };
    const target = this.sync.localMs(d.at_ms) - earlyMs;
    const exact = () => {
      const left = target - performance.now();
      if (left > SPIN_MS + 1) {
        this.timers.after(left - SPIN_MS, exact);
        return;
      }
      // Spin the last few ms: a timer alone fires up to several ms late.
      while (performance.now() < target) { /* wait for the instant */ }
      run();
    };
    const delay = target - performance.now();
    if (delay <= 0.5) run();
    else if (delay <= SPIN_MS) exact();
    else this.timers.after(delay - SPIN_MS, exact);
  }

  seekForStart(d) {
    if (!d.entry_id || this.tag !== d.entry_id || this.settling === d.entry_id || !this.audio.paused) return;
    const pos = this.audio.currentTime * 1000;
    if (Math.abs(pos - d.position_ms) > START_SEEK_MS) {
      this.settling = d.entry_id;
      const gen = this.gen;
      const done = () => {
        this.audio.removeEventListener('seeked', done);
        if (gen === this.gen && this.settling === d.entry_id) this.settling = null;
      };
      this.audio.addEventListener('seeked', done);
      this.audio.currentTime = d.position_ms / 1000;
    }
  }

  noteSwitch(d, extra) {
    this.switches.push({
      action: d.action, term: d.term, at_ms: d.at_ms, position_ms: d.position_ms,
      ran_at_ms: this.serverNow(), audio_ms: Math.floor(this.audio.currentTime * 1000), ...extra,
    });
    if (this.switches.length > 20) this.switches.shift();
  }

  start(d) {
    if (!d.entry_id) return;
    this.holding = false;
    this.noteSwitch(d, { held: this.tag === d.entry_id });
    if (this.tag !== d.entry_id) {
      if (!d.track || !d.track.url) return;
      this.load(d.entry_id, d.track.url, d.position_ms, !d.playing);
    } else {
      const late = d.playing ? Math.max(0, this.serverNow() - d.at_ms) : 0;
      const want = d.position_ms + late;
      const pos = this.audio.currentTime * 1000;
      if (this.settling !== d.entry_id && this.audio.paused && Math.abs(pos - want) > LATE_SEEK_MS) {
        this.audio.currentTime = want / 1000;
      }
      if (d.playing) {
        this.playEl();
        this.learnStart();
      }
    }
    this.lastAnchor = null;
    this.lastPosition = null;
    this.lastReport = null;
    this.ui.said('playing on this tab');
  }

  /** How long after play() the output really went on from the held position: where the
   * line of currentTime (from 250 to 700 ms after play()) was at it. t0, p0: when play()
   * was called and the position then (default: now). */
  learnStart(t0 = performance.now(), p0 = this.audio.currentTime * 1000) {
    const a = this.audio;
    const gen = this.gen;
    const pts = [];
    const id = setInterval(() => {
      if (gen !== this.gen || a.paused) { clearInterval(id); return; }
      const t = performance.now() - t0;
      if (t > 250) pts.push([t, a.currentTime * 1000]);
      if (t < 700) return;
      clearInterval(id);
      if (pts.length < 10) return;
      const n = pts.length;
      const mt = pts.reduce((s, p) => s + p[0], 0) / n;
      const mp = pts.reduce((s, p) => s + p[1], 0) / n;
      let sxx = 0; let sxy = 0;
      for (const [t1, p1] of pts) { sxx += (t1 - mt) ** 2; sxy += (t1 - mt) * (p1 - mp); }
      const rate = sxy / sxx;
      if (!(rate > 0.5 && rate < 1.5)) return;
      const lat = mt + (p0 - mp) / rate;
      if (lat > 0 && lat < 500) this.startLatencyMs = this.startLatencyMs ? (this.startLatencyMs + lat) / 2 : lat;
    }, 4);
  }

  stopForTransfer(d) {
    if (this.preparing) return; // a transfer back here is loading already
    if (this.tag) {
      const st = this.mirror.state;
      const cur = (st.queue || []).find((e) => e.entry_id === st.current);
      this.noteSwitch(d, { session_ms: positionAt(st.position, d.at_ms, cur ? cur.duration_ms : 0) });
      this.stopEl();
      this.ui.said('playback moved to another device');
    }
  }
}
