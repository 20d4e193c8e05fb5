// Small DOM and formatting helpers (no framework).

/** h('button', {class: 'x', dataset: {testid: 'y'}, onclick: f}, 'text', child) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'testid') el.dataset.testid = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(id) {
  return document.getElementById(id);
}

export function fmtTime(ms) {
  const s = Math.max(0, Math.floor((ms || 0) / 1000));
  const m = Math.floor(s / 60);
  const hrs = Math.floor(m / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hrs ? `${hrs}:${String(m % 60).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

let noticeTimer = 0;
/** A visible line at the top; sticky ones stay until the next notice. */
export function notice(text, { sticky = false } = {}) {
  const el = $('notice');
  el.textContent = text;
  el.hidden = !text;
  clearTimeout(noticeTimer);
  if (text && !sticky) noticeTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

export function randomId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** A default name for this tab: "<Browser> on <OS>". */
export function defaultDeviceName() {
  const ua = navigator.userAgent || '';
  let browser = '';
  let os = '';
  const uad = navigator.userAgentData;
  if (uad && Array.isArray(uad.brands)) {
    const names = uad.brands.map((b) => b.brand)
      .filter((b) => !/not.?a.?brand/i.test(b) && b !== 'Chromium' && b !== 'HeadlessChrome');
    browser = names[0] || 'Chromium';
    os = uad.platform || '';
  }
  if (!browser) {
    if (/Edg\//.test(ua)) browser = 'Edge';
    else if (/Firefox\//.test(ua)) browser = 'Firefox';
    else if (/OPR\//.test(ua)) browser = 'Opera';
    else if (/Chrome\//.test(ua)) browser = 'Chrome';
    else if (/Safari\//.test(ua)) browser = 'Safari';
    else browser = 'Browser';
  }
  if (!os) {
    if (/Android/.test(ua)) os = 'Android';
    else if (/iPhone|iPad|iPod/.test(ua)) os = 'iOS';
    else if (/Mac OS X/.test(ua)) os = 'macOS';
    else if (/Windows/.test(ua)) os = 'Windows';
    else if (/CrOS/.test(ua)) os = 'ChromeOS';
    else if (/Linux/.test(ua)) os = 'Linux';
    else os = 'the web';
  }
  return `${browser} on ${os}`;
}

const ICONS = {
  prev: 'M6 5h2v14H6zM20 5v14L9 12z',
  next: 'M16 5h2v14h-2zM4 5v14l11-7z',
  play: 'M7 4v16l13-8z',
  pause: 'M6 4h4v16H6zM14 4h4v16h-4z',
  up: 'M12 4l7 8h-5v8h-4v-8H5z',
  down: 'M12 20l-7-8h5V4h4v8h5z',
  playnext: 'M3 6h11v2H3zm0 5h11v2H3zm0 5h7v2H3zm13-3.5l6 4.5-6 4.5z',
  add: 'M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z',
  remove: 'M6.4 5L12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z',
  heart: 'M12 20.5l-1.4-1.3C5.4 14.5 2 11.4 2 7.8 2 4.9 4.3 2.6 7.2 2.6c1.7 0 3.5.8 4.8 2.1 1.3-1.3 3.1-2.1 4.8-2.1 2.9 0 5.2 2.3 5.2 5.2 0 3.6-3.4 6.7-8.6 11.4z',
};

/** An inline SVG icon (attributes only: no style, so the CSP holds). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', `ic ic-${name}`);
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}
