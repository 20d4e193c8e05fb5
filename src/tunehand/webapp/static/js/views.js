// The sections: library (artists -> albums -> tracks), search as you type, playlists,
// liked, history, the queue and the devices. Each renders into its <section>.

import { ApiError, get, api } from './api.js';
import { h, $, fmtTime, notice, icon } from './util.js';

const enc = encodeURIComponent;
const SEARCH_DEBOUNCE_MS = 150;

export class Views {
  /** app: {command(op, fields), deviceId(), state(), devices(), mirror} */
  constructor(app) {
    this.app = app;
    this.liked = new Set();
    this.queueTracks = new Map(); // entry_id -> track view
    this.queueKey = '';
    this.queueFetch = null;
    this.searchAbort = null;
    this.searchTimer = 0;
    this.searchSeq = 0;
    this.renaming = null;
    this.showOffline = false;
    const input = $('search-input');
    input.addEventListener('input', () => this.searchSoon(input.value));
  }

  failed(err) {
    if (err && err.name === 'AbortError') return;
    notice(err instanceof ApiError ? err.message : `cannot reach the server: ${err.message || err}`);
  }

  // --- tracks ---------------------------------------------------------------------

  trackRow(t, extra = null) {
    const likeBtn = h('button', {
      type: 'button', testid: 'track-like', class: this.liked.has(t.id) ? 'icon liked' : 'icon',
      'aria-label': 'Like', 'aria-pressed': this.liked.has(t.id) ? 'true' : 'false',
      onclick: () => this.toggleLike(t.id, likeBtn),
    }, icon('heart'));
    return h('li', { class: 'row track', testid: 'track-row', dataset: { trackId: t.id } },
      h('button', { type: 'button', class: 'row-main', testid: 'track-play', onclick: () => this.playTrack(t.id) },
        h('span', { class: 'title' }, t.title),
        h('span', { class: 'sub' }, [t.artist, t.album].filter(Boolean).join(' · ')),
      ),
      extra,
      h('span', { class: 'dur' }, t.duration_ms ? fmtTime(t.duration_ms) : ''),
      h('span', { class: 'actions' },
        h('button', { type: 'button', class: 'icon', testid: 'track-queue-next', 'aria-label': 'Play next',
          onclick: () => this.app.command('queue_next', { track_ids: [t.id] }, 'will play next') }, icon('playnext')),
        h('button', { type: 'button', class: 'icon', testid: 'track-queue-add', 'aria-label': 'Add to queue',
          onclick: () => this.app.command('queue_add', { track_ids: [t.id] }, 'added to the queue') }, icon('add')),
        likeBtn,
      ),
    );
  }

  trackList(tracks) {
    return h('ul', { class: 'list' }, tracks.filter(Boolean).map((t) => this.trackRow(t)));
  }

  playTrack(trackId) {
    const st = this.app.state();
    const fields = { track_ids: [trackId] };
    if (!st || !st.active_device) fields.device_id = this.app.deviceId();
    this.app.command('play', fields);
  }

  async loadLikes() {
    try {
      const r = await get('/v1/likes');
      this.liked = new Set(r.tracks.map((t) => t.id));
      return r.tracks;
    } catch (err) {
      this.failed(err);
      return [];
    }
  }

  async toggleLike(trackId, btn) {
    const on = !this.liked.has(trackId);
    try {
      await api(on ? 'PUT' : 'DELETE', `/v1/likes/${enc(trackId)}`);
      if (on) this.liked.add(trackId);
      else this.liked.delete(trackId);
      btn.classList.toggle('liked', on);
      btn.setAttribute('aria-pressed', on ? 'true' : 'false');
    } catch (err) {
      this.failed(err);
    }
  }

  // --- library --------------------------------------------------------------------

  async library() {
    const view = $('view-library');
    view.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const r = await get('/v1/artists');
      view.replaceChildren(
        h('h2', {}, 'Artists'),
        r.artists.length ? h('ul', { class: 'list' }, r.artists.map((a) => h('li', { class: 'row' },
          h('button', { type: 'button', class: 'row-main', testid: 'artist-row', dataset: { artistKey: a.key },
            onclick: () => this.artist(a) },
          h('span', { class: 'title' }, a.name || '(no artist)'),
          h('span', { class: 'sub' }, `${a.albums} album${a.albums === 1 ? '' : 's'} · ${a.tracks} tracks`))))) :
          h('p', { class: 'muted' }, 'The library is empty.'),
      );
    } catch (err) {
      view.replaceChildren(h('p', { class: 'error' }, 'Cannot load the library.'));
      this.failed(err);
    }
  }

  albumRows(albums) {
    return h('ul', { class: 'list' }, albums.map((al) => h('li', { class: 'row' },
      h('button', { type: 'button', class: 'row-main', testid: 'album-row', dataset: { albumId: al.id },
        onclick: () => this.album(al) },
      h('span', { class: 'title' }, al.title || '(no album)'),
      h('span', { class: 'sub' }, [al.artist, al.year, `${al.tracks} tracks`].filter(Boolean).join(' · '))))));
  }

  back(label, fn) {
    return h('button', { type: 'button', class: 'back small', onclick: fn }, `‹ ${label}`);
  }

  async artist(a) {
    const view = $('view-library');
    try {
      const r = await get(`/v1/artists/${enc(a.key)}/albums`);
      view.replaceChildren(this.back('Artists', () => this.library()), h('h2', {}, a.name), this.albumRows(r.albums));
    } catch (err) {
      this.failed(err);
    }
  }

  async album(al, viewId = 'view-library') {
    const view = $(viewId);
    try {
      const r = await get(`/v1/albums/${enc(al.id)}/tracks`);
      const ids = r.tracks.map((t) => t.id);
      view.replaceChildren(
        this.back('Artists', () => this.library()),
        h('h2', {}, al.title || '(no album)'),
        h('p', { class: 'sub' }, [al.artist, al.year].filter(Boolean).join(' · ')),
        h('div', { class: 'bar' },
          h('button', { type: 'button', class: 'primary', onclick: () => this.playAll(ids) }, 'Play album'),
          h('button', { type: 'button', onclick: () => this.app.command('queue_add', { track_ids: ids }, 'album added to the queue') }, 'Add to queue')),
        this.trackList(r.tracks),
      );
      if (viewId !== 'view-library') this.app.show('library');
    } catch (err) {
      this.failed(err);
    }
  }

  playAll(ids) {
    if (!ids.length) return;
    const st = this.app.state();
    const fields = { track_ids: ids, replace: true, index: 0 };
    if (!st || !st.active_device) fields.device_id = this.app.deviceId();
    this.app.command('play', fields);
  }

  // --- search ---------------------------------------------------------------------

  searchSoon(q) {
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(() => this.search(q), SEARCH_DEBOUNCE_MS);
  }

  async search(q) {
    const out = $('search-results');
    if (this.searchAbort) this.searchAbort.abort(); // a stale request never lands
    const seq = ++this.searchSeq;
    if (!q.trim()) {
      out.replaceChildren();
      return;
    }
    const ctl = new AbortController();
    this.searchAbort = ctl;
    try {
      const r = await get(`/v1/search?q=${enc(q.slice(0, 200))}&groups=1&limit=50`, { signal: ctl.signal });
      if (seq !== this.searchSeq) return;
      const parts = [];
      if (r.artists && r.artists.length) {
        parts.push(h('h3', {}, 'Artists'), h('ul', { class: 'list' }, r.artists.map((a) => h('li', { class: 'row' },
          h('button', { type: 'button', class: 'row-main', testid: 'artist-row', dataset: { artistKey: a.key },
            onclick: () => { this.app.show('library'); this.artist(a); } },
          h('span', { class: 'title' }, a.name))))));
      }
      if (r.albums && r.albums.length) {
        parts.push(h('h3', {}, 'Albums'), h('ul', { class: 'list' }, r.albums.map((al) => h('li', { class: 'row' },
          h('button', { type: 'button', class: 'row-main', testid: 'album-row', dataset: { albumId: al.id },
            onclick: () => { this.app.show('library'); this.album(al); } },
          h('span', { class: 'title' }, al.title), h('span', { class: 'sub' }, al.artist))))));
      }
      if (r.playlists && r.playlists.length) {
        parts.push(h('h3', {}, 'Playlists'), h('ul', { class: 'list' }, r.playlists.map((p) => this.playlistRow(p))));
      }
      parts.push(h('h3', {}, 'Tracks'));
      parts.push(r.tracks.length ? this.trackList(r.tracks) : h('p', { class: 'muted' }, 'No tracks match.'));
      out.replaceChildren(...parts);
    } catch (err) {
      if (seq === this.searchSeq) this.failed(err);
    }
  }

  // --- playlists, liked, history ----------------------------------------------------

  playlistRow(p) {
    return h('li', { class: 'row' },
      h('button', { type: 'button', class: 'row-main', testid: 'playlist-row', dataset: { name: p.name },
        onclick: () => { this.app.show('playlists'); this.playlist(p.name); } },
      h('span', { class: 'title' }, p.name), h('span', { class: 'sub' }, `${p.tracks} tracks`)));
  }

  async playlists() {
    const view = $('view-playlists');
    try {
      const r = await get('/v1/playlists');
      view.replaceChildren(h('h2', {}, 'Playlists'), r.playlists.length ?
        h('ul', { class: 'list' }, r.playlists.map((p) => this.playlistRow(p))) :
        h('p', { class: 'muted' }, 'No playlists yet.'));
    } catch (err) {
      this.failed(err);
    }
  }

  async playlist(name) {
    const view = $('view-playlists');
    try {
      const r = await get(`/v1/playlists/${enc(name)}`);
      const ids = r.tracks.filter(Boolean).map((t) => t.id);
      view.replaceChildren(this.back('Playlists', () => this.playlists()), h('h2', {}, r.name),
        h('div', { class: 'bar' },
          h('button', { type: 'button', class: 'primary', onclick: () => this.playAll(ids) }, 'Play playlist'),
          h('button', { type: 'button', onclick: () => this.app.command('queue_add', { track_ids: ids }, 'playlist added to the queue') }, 'Add to queue')),
        this.trackList(r.tracks));
    } catch (err) {
      this.failed(err);
    }
  }

  async likedView() {
    const view = $('view-liked');
    const tracks = await this.loadLikes();
    view.replaceChildren(h('h2', {}, 'Liked'), tracks.length ? this.trackList(tracks) : h('p', { class: 'muted' }, 'No liked tracks yet.'));
  }

  async historyView() {
    const view = $('view-history');
    try {
      const r = await get('/v1/history?limit=100');
      view.replaceChildren(h('h2', {}, 'History'), r.history.length ?
        h('ul', { class: 'list' }, r.history.filter((x) => x.track).map((x) =>
          this.trackRow(x.track, h('span', { class: 'when' }, new Date(x.played_ms).toLocaleString())))) :
        h('p', { class: 'muted' }, 'Nothing played yet.'));
    } catch (err) {
      this.failed(err);
    }
  }

  // --- queue ----------------------------------------------------------------------

  /** Fetch the queue's track views when its entries changed. */
  queueChanged(st) {
    const key = (st.queue || []).map((e) => e.entry_id).join(',');
    if (key === this.queueKey) return;
    this.queueKey = key;
    const missing = (st.queue || []).some((e) => !this.queueTracks.has(e.entry_id));
    if (!missing) return;
    clearTimeout(this.queueFetch);
    this.queueFetch = setTimeout(async () => {
      try {
        const r = await get('/v1/session/queue');
        for (const e of r.entries) if (e.track) this.queueTracks.set(e.entry_id, e.track);
        this.renderQueue();
      } catch (err) {
        this.failed(err);
      }
    }, 30);
  }

  renderQueue() {
    const st = this.app.state();
    const list = $('queue-list');
    if (!st) return;
    const q = st.queue || [];
    const order = st.shuffle && st.order && st.order.length ? st.order : q.map((e) => e.entry_id);
    const byId = new Map(q.map((e) => [e.entry_id, e]));
    if (!order.length) {
      this.queueRendered = '';
      list.replaceChildren(h('li', { class: 'muted' }, 'The queue is empty: play or add something from the library.'));
      return;
    }
    const curIdx = order.indexOf(st.current);
    // Only when what it shows changed: a state that only moved the position leaves the
    // rows (and a finger on one of them) alone.
    const key = JSON.stringify([order, st.current, st.shuffle, order.map((id) => (this.queueTracks.get(id) || {}).id)]);
    if (key === this.queueRendered && list.childElementCount) return;
    this.queueRendered = key;
    list.replaceChildren(...order.map((id, i) => {
      const e = byId.get(id);
      const t = this.queueTracks.get(id);
      const move = (to) => this.app.command(st.shuffle ? 'order_move' : 'queue_move', { entry_id: id, index: to });
      const after = i > curIdx ? curIdx + 1 : curIdx; // right after the playing entry
      return h('li', { class: id === st.current ? 'row queue current' : 'row queue', testid: 'queue-row', dataset: { entryId: id, trackId: e ? e.track_id : '' } },
        h('span', { class: 'num' }, String(i + 1)),
        h('button', { type: 'button', class: 'row-main', onclick: () => this.app.command('play', { entry_id: id }) },
          h('span', { class: 'title' }, t ? t.title : (e ? e.track_id : id)),
          h('span', { class: 'sub' }, t ? t.artist : '')),
        h('span', { class: 'dur' }, e && e.duration_ms ? fmtTime(e.duration_ms) : ''),
        h('span', { class: 'actions' },
          h('button', { type: 'button', class: 'icon', testid: 'queue-up', 'aria-label': 'Move up', disabled: i === 0, onclick: () => move(i - 1) }, icon('up')),
          h('button', { type: 'button', class: 'icon', testid: 'queue-down', 'aria-label': 'Move down', disabled: i === order.length - 1, onclick: () => move(i + 1) }, icon('down')),
          h('button', { type: 'button', class: 'icon', testid: 'queue-play-next', 'aria-label': 'Play next',
            disabled: id === st.current || curIdx < 0 || i === curIdx + 1, onclick: () => move(after) }, icon('playnext')),
          h('button', { type: 'button', class: 'icon', testid: 'queue-remove', 'aria-label': 'Remove',
            onclick: () => this.app.command('queue_remove', { entry_ids: [id] }) }, icon('remove'))));
    }));
  }

  // --- devices --------------------------------------------------------------------

  renderDevices() {
    const list = $('devices-list');
    const st = this.app.state();
    const me = this.app.deviceId();
    const all = [...this.app.devices()].sort((a, b) => (b.online - a.online) || a.name.localeCompare(b.name));
    const offline = all.filter((d) => !d.online && d.id !== me).length;
    const devices = this.showOffline ? all : all.filter((d) => d.online || d.id === me || (st && st.active_device === d.id));
    const typing = document.activeElement && document.activeElement.dataset.testid === 'device-rename-input';
    if (this.renaming && typing) return; // a name is being typed: not under the user's fingers
    const key = JSON.stringify([all, st && st.active_device, this.renaming, this.showOffline, me]);
    if (key === this.devicesRendered && list.childElementCount) return;
    this.devicesRendered = key;
    const rows = devices.map((d) => {
      const kind = (d.capabilities || []).includes('web') ? 'web' : (d.kind || 'terminal');
      const active = st && st.active_device === d.id;
      const plays = (d.capabilities || []).includes('play') || kind === 'web';
      const label = h('span', { class: 'row-main static' },
        h('span', { class: 'title' }, d.name, d.id === me ? ' (this tab)' : ''),
        h('span', { class: 'sub' }, [kind, d.online ? 'online' : 'offline', active ? (d.id === me ? 'playing here' : 'playing') : ''].filter(Boolean).join(' · ')));
      let nameBox = label;
      if (this.renaming === d.id) {
        const input = h('input', { type: 'text', value: d.name, maxlength: 64, testid: 'device-rename-input', 'aria-label': 'New name' });
        nameBox = h('form', { class: 'row-main rename', onsubmit: (ev) => { ev.preventDefault(); this.rename(d.id, input.value); } },
          input, h('button', { type: 'submit', class: 'small' }, 'Save'),
          h('button', { type: 'button', class: 'small', onclick: () => { this.renaming = null; this.renderDevices(); } }, 'Cancel'));
        setTimeout(() => input.focus(), 0);
      }
      return h('li', { class: `row device${active ? ' current' : ''}${d.online ? '' : ' offline'}`, testid: 'device-row', dataset: { deviceId: d.id, kind } },
        nameBox,
        h('span', { class: 'actions' },
          d.id === me ?
            h('button', { type: 'button', testid: 'device-pull', disabled: active, onclick: () => this.app.pull() }, 'Play here') :
            h('button', { type: 'button', testid: 'device-push', disabled: !d.online || active || !plays,
              onclick: () => this.app.command('transfer', { device_id: d.id }, `moving playback to ${d.name}`) }, 'Play there'),
          h('button', { type: 'button', class: 'small', testid: 'device-rename', onclick: () => { this.renaming = d.id; this.renderDevices(); } }, 'Rename')));
    });
    if (offline) {
      rows.push(h('li', { class: 'more' }, h('button', { type: 'button', class: 'small', testid: 'devices-offline',
        onclick: () => { this.showOffline = !this.showOffline; this.renderDevices(); } },
      this.showOffline ? 'Hide offline devices' : `Show offline devices (${offline})`)));
    }
    list.replaceChildren(...rows);
  }

  async rename(id, name) {
    name = name.trim();
    if (!name) return;
    try {
      const dev = await api('PATCH', `/v1/devices/${enc(id)}`, { name });
      this.renaming = null;
      this.app.renamed(id, dev && dev.name ? dev.name : name);
    } catch (err) {
      this.failed(err);
    }
  }
}
