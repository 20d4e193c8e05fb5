// Timers for the switch instants: a worker's timers are not throttled in a hidden tab
// the way the page's are (aligned to a second, or worse), so a prepared tab in the
// background still starts at the scheduled server instant.
self.onmessage = (ev) => {
  const { id, delay } = ev.data;
  setTimeout(() => self.postMessage(id), Math.max(0, delay));
};
