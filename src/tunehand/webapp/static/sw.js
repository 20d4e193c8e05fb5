// tunehand service worker: caches the app shell (the files below) and nothing else.
// /v1/ (the API, the channel, streams, art) and anything with a token are never cached:
// those requests are not even looked at (the browser fetches them as without a worker).

const CACHE = 'tunehand-shell-v1';
const SHELL = [
  '/',
  '/app/app.css',
  '/app/js/main.js',
  '/app/js/api.js',
  '/app/js/channel.js',
  '/app/js/device.js',
  '/app/js/views.js',
  '/app/js/util.js',
  '/app/js/timer-worker.js',
  '/app/icons/icon.svg',
  '/app/icons/icon-192.png',
  '/app/icons/icon-512.png',
  '/manifest.webmanifest',
];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return; // never /v1/
  // Network first (the server answers no-cache with an ETag), the cached shell offline.
  ev.respondWith(fetch(req).then((res) => {
    if (res.ok) {
      const copy = res.clone();
      caches.open(CACHE).then((c) => c.put(url.pathname, copy));
    }
    return res;
  }).catch(() => caches.match(url.pathname)));
});
