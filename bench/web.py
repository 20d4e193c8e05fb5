"""The web app (issue 17): handoff between a browser tab and a receiver, first paint, shell size.

Handoff (browser -> receiver and receiver -> browser). A real server on a library of
long generated tracks, one real receiver (`tunehand receiver`, mpv with `ao=null` and
`ao-null-buffer` of each CASE, a JSON IPC socket) and a real headless Chromium tab of
the app, logged in through its login page (so the tab is a device of the account).
The queue holds every track with repeat on and starts on the tab; `ctl transfer`
then moves playback to the receiver and back, ROUNDS times each way after WARMUP.

One clock: the bench process's time.monotonic().

- mpv: as `bench.handoff` does, its `time-pos` is asked every 2 ms over the IPC socket
  and every answer stamped with time.monotonic() on arrival (loopback: ~0.1 ms);
  `pause`, `core-idle`, `idle-active` come as observed events.
- the tab: a sampler installed in the page (through WebDriver) reads the `<audio
  id="player">` element's `currentTime` and `paused` every 4 ms (setInterval's floor)
  and stamps each read with the page's `performance.now()`. A thread fetches the
  samples every FETCH_S; each fetch also returns the page's `performance.now()` at
  that moment, bracketed by time.monotonic() before and after the WebDriver round trip
  (~3 ms). Chromium's `performance.now()` and Python's time.monotonic() both count
  CLOCK_MONOTONIC, so their difference is a constant: it is taken as the median of the
  midpoint offsets of the lowest-round-trip tenth of all fetches (each such offset is
  within half its round trip, ~1.5 ms, of the truth), and page stamps are moved onto
  the bench's clock with it. The spread of those offsets and the drift between the
  first and the second half of the run are printed as a check.

Chromium interpolates `currentTime` between audio clock updates, so its reads lie on a
line `pos = p0 + rate * t` within ~0.3 ms; its fake output (no sound card) may run at
a rate other than 1 like mpv's null output: every line below is fitted, never assumed
to have slope 1.

For each handoff:
- source end: for the tab, the instant its line reached the position the element had
  when the app called its pause() (the app unloads the element in the same task, so
  no sample and no `pause` event sees that position: the sampler wraps the element's
  pause method to note it, with a page stamp); for mpv, the first sign that it stopped
  (`pause`/`core-idle`/`idle-active` true, or time-pos gone), as `bench.handoff` does;
- target start: where the target's steady line (least squares over its steps from
  START_SKIP_S to AFTER_START_S after its first step) was at the position it was held
  at. Chromium's currentTime makes a first small step 10-30 ms after play() and then
  holds still for ~70 ms while its output starts (on every start; the same on a plain
  page without the app), before it runs on at rate 1: the line says when the audio
  really went on from the held position. The
  figures by the first step instead (`bench.handoff`'s definition: first step moved back
  by how far it had advanced) are printed alongside, and "hold" is the difference;
- gap = target start - source end (negative: both played at once);
- jump = where the target started (its held position) - where the source was at that
  instant by its own line fitted over its last SOURCE_FIT_S before it stopped
  (positive: audio skipped, negative: repeated).

First paint: the app's `/` on a warm server (loaded once before), NAV_RUNS loads in a
fresh tab each: with the browser's caches and the origin's storage (service worker,
Cache Storage, cookies) cleared before each load ("cold browser"), and once more as a
plain reload with everything kept ("returning"). The figure is the page's own
`first-contentful-paint` (Performance API), relative to the navigation's start.

Shell size: a cold load (everything cleared) with gzip offered (Chromium always offers
it): the sum of `transferSize` (body as sent, compressed, plus headers) over the
navigation and every resource of the app shell the page fetched (`/`, `/app/...`, the
manifest), with `encodedBodySize` and `decodedBodySize` printed per file (equal sizes:
the server did not compress). And the service worker's shell: the URLs it holds in
Cache Storage once ready, plus `sw.js`, fetched with `Accept-Encoding: gzip` by httpx,
summing the body bytes as they came over the wire.

Environment: BENCH_WEB_ROUNDS (handoffs each way, default 10), BENCH_WEB_CASES
(comma-separated case names, default all), BENCH_WEB_NAV_RUNS (default 10).
A figure that misses its target is printed as MISSED; the module never fails the run
for it (the summary shows the target in the note), as issue 17 asks.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from tests.web_helpers import close_browser, open_browser, web_login

from bench.common import PASSWORD, USER, Result, login_cli, ms, percentile, selected_cases
from bench.handoff import (
    TRACK_S,
    Api,
    MpvWatch,
    Poller,
    Receiver,
    Remote,
    _line,
    _wall_minus_mono,
    bench_env,
    bench_server,
    ctl,
    make_music,
    start_receiver,
    summary,
)

ROUNDS = int(os.environ.get("BENCH_WEB_ROUNDS", "10"))
WARMUP = 1
NAV_RUNS = int(os.environ.get("BENCH_WEB_NAV_RUNS", "10"))
CASES_ENV = "BENCH_WEB_CASES"
FETCH_S = 0.05
SAMPLE_MS = 1
"""The sampler's setInterval period (Chromium runs it every 4 ms at the fastest)."""
SETTLE_S = 1.5
AFTER_START_S = 1.2
START_SKIP_S = 0.25
SOURCE_FIT_S = 0.6
WAIT_S = 10.0
REWIND_BEFORE_END_S = 12.0

TARGET_JUMP_MEDIAN_MS = 30.0
TARGET_GAP_MEDIAN_MS = 50.0
TARGET_FCP_MS = 300.0
TARGET_SHELL_KB = 150.0


@dataclass(frozen=True)
class Case:
    name: str
    mpv_options: tuple[str, ...]


CASES = (
    Case("null 0.05", ("ao=null", "ao-null-buffer=0.05")),
    Case("null 0.2", ("ao=null", "ao-null-buffer=0.2")),
)


# --- the browser -------------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium (the tests' own setup, autoplay allowed); always quit."""
    driver = open_browser()
    try:
        yield driver
    finally:
        close_browser(driver)


def tid(name: str) -> str:
    """The CSS selector of a data-testid."""
    return f'[data-testid="{name}"]'


_SAMPLER = """
if (!window.__thBench) {
  window.__thBench = [];
  window.__thPauses = [];
  window.__thBenchTimer = setInterval(() => {
    const a = document.getElementById('player');
    if (a && !a.__thPatched) {
      // The app stops a source by pause() and then unloading the element, in one task:
      // no sample (and no 'pause' handler) ever sees where it stopped. Record that here.
      const pause = a.pause;
      a.pause = function () {
        window.__thPauses.push([performance.now(), this.currentTime]);
        return pause.call(this);
      };
      a.__thPatched = true;
    }
    window.__thBench.push([performance.now(), a ? a.currentTime : null, a ? a.paused : true]);
  }, arguments[0]);
}
"""
_FETCH = "return [performance.now(), window.__thBench.splice(0), window.__thPauses.splice(0)];"


class BrowserWatch:
    """The tab's `<audio id="player">`: (time.monotonic(), currentTime, paused) samples,
    taken in the page every 4 ms and fetched by a thread (see the module docstring for
    how page stamps become monotonic ones). All WebDriver calls go through `js`."""

    def __init__(self, driver: WebDriver, name: str = "tab") -> None:
        self.name = name
        self.driver = driver
        self._lock = threading.Lock()
        self._raw_t: list[float] = []
        """Page stamps (performance.now(), ms), in order."""
        self._pos: list[float | None] = []
        self._paused: list[bool] = []
        self._calib: list[tuple[float, float, float]] = []
        """(round trip s, monotonic midpoint s, page stamp ms) of every fetch."""
        self._offset: float | None = None
        self.pauses: list[tuple[float, float]] = []
        """(page stamp ms, currentTime) of every pause() call on the element."""
        self._stop = threading.Event()
        self.js(_SAMPLER, SAMPLE_MS)
        for _ in range(20):
            self._fetch()
        self._thread = threading.Thread(target=self._run, name="tab-sampler", daemon=True)
        self._thread.start()

    def js(self, script: str, *args: Any) -> Any:
        with self._lock:
            return self.driver.execute_script(script, *args)

    def _fetch(self) -> None:
        with self._lock:
            a = time.monotonic()
            now, samples, pauses = self.driver.execute_script(_FETCH)
            b = time.monotonic()
        self._calib.append((b - a, (a + b) / 2, float(now)))
        self._offset = None
        self.pauses += [(float(t), float(pos)) for t, pos in pauses]
        for t, pos, paused in samples:
            self._pos.append(None if pos is None else float(pos))
            self._paused.append(bool(paused))
            self._raw_t.append(float(t))  # stamps last: their length guards the others

    def _run(self) -> None:
        while not self._stop.wait(FETCH_S):
            with contextlib.suppress(Exception):
                self._fetch()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.js("clearInterval(window.__thBenchTimer); window.__thBench = undefined;")

    # --- the clock ---------------------------------------------------------------------

    def offset(self) -> float:
        """time.monotonic() - performance.now()/1000, from the lowest-round-trip fetches."""
        if self._offset is None:
            calib = sorted(list(self._calib))
            best = calib[: max(3, len(calib) // 10)]
            self._offset = statistics.median(mid - page / 1000 for _, mid, page in best)
        return self._offset

    def clock_report(self) -> str:
        calib = sorted(list(self._calib))
        best = calib[: max(3, len(calib) // 10)]
        offs = [mid - page / 1000 for _, mid, page in best]
        half = sorted(list(self._calib), key=lambda c: c[1])
        n = len(half) // 2

        def est(part: Sequence[tuple[float, float, float]]) -> float:
            b = sorted(part)[: max(3, len(part) // 10)]
            return statistics.median(mid - page / 1000 for _, mid, page in b)

        drift = (est(half[n:]) - est(half[:n])) * 1000 if n >= 6 else math.nan
        return (
            f"page clock: {len(calib)} fetches, round trip min {calib[0][0] * 1000:.2f} ms, "
            f"median {statistics.median(c[0] for c in calib) * 1000:.2f} ms; offsets of "
            f"the best {len(best)} spread {(max(offs) - min(offs)) * 1000:.2f} ms; "
            f"second half - first half {drift:+.2f} ms"
        )

    def _mono(self, page_ms: float) -> float:
        return page_ms / 1000 + self.offset()

    def _page(self, mono: float) -> float:
        return (mono - self.offset()) * 1000

    # --- reading the record (the MpvWatch interface) -----------------------------------

    def _range(self, t0: float, t1: float) -> tuple[int, int]:
        import bisect

        n = len(self._raw_t)
        stamps = self._raw_t[:n]
        lo = bisect.bisect_left(stamps, self._page(t0)) if t0 > -math.inf else 0
        hi = bisect.bisect_right(stamps, self._page(t1)) if t1 < math.inf else n
        return lo, hi

    def samples(self, t0: float, t1: float = math.inf) -> list[tuple[float, float | None]]:
        lo, hi = self._range(t0, t1)
        off = self.offset()
        return [(self._raw_t[i] / 1000 + off, self._pos[i]) for i in range(lo, hi)]

    def full(self, t0: float, t1: float = math.inf) -> list[tuple[float, float | None, bool]]:
        lo, hi = self._range(t0, t1)
        off = self.offset()
        return [(self._raw_t[i] / 1000 + off, self._pos[i], self._paused[i]) for i in range(lo, hi)]

    def advances(self, t0: float, t1: float = math.inf) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        prev: float | None = None
        for t, p, paused in self.full(t0, t1):
            if p is not None and prev is not None and p > prev and not paused:
                out.append((t, p))
            prev = p
        return out

    def first_event(self, name: str, value: Any, after: float) -> float | None:
        """The first sample after `after` where `paused` turned to `value` (name "pause")."""
        if name != "pause":
            return None
        prev: bool | None = None
        for t, _, paused in self.full(after - 1.0):
            if t > after and prev is not None and paused == value and prev != value:
                return t
            prev = paused
        return None

    def wait_event(self, name: str, value: Any, after: float, timeout_s: float = WAIT_S) -> float:
        deadline = time.monotonic() + timeout_s
        while (t := self.first_event(name, value, after)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the audio element's {name} never became {value}")
            time.sleep(0.01)
        return t

    def wait_advancing(self, after: float, timeout_s: float = WAIT_S) -> tuple[float, float]:
        deadline = time.monotonic() + timeout_s
        while not (adv := self.advances(after)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the audio element's currentTime never moved")
            time.sleep(0.01)
        return adv[0]

    def position(self) -> float | None:
        return self._pos[len(self._raw_t) - 1] if self._raw_t else None

    def server_clock_error_ms(self, reads: int = 15) -> float:
        """The app's own server clock (its TimeSync, measured over its websocket) minus
        the server's (the wall clock every process here shares), by the read with the
        shortest WebDriver round trip."""
        wall = _wall_minus_mono()
        best: tuple[float, float] | None = None
        for _ in range(reads):
            a = time.monotonic()
            server_ms = float(self.js("return window.tunehand.serverNow();"))
            b = time.monotonic()
            err = server_ms - ((a + b) / 2 + wall) * 1000
            if best is None or b - a < best[0]:
                best = (b - a, err)
        assert best is not None
        return best[1]

    def last_start(self) -> tuple[float, float, float]:
        """The app's last start switch: (planned instant T, when it ran by its own clock,
        both server ms) and the start delay it had learned then (ms)."""
        got = self.js(
            "const s = window.tunehand.switches.filter((x) => x.action === 'start');"
            "const l = s[s.length - 1];"
            "return l ? [l.at_ms, l.ran_at_ms, window.tunehand.startLatencyMs] : null;"
        )
        if not got:
            return math.nan, math.nan, math.nan
        return float(got[0]), float(got[1]), float(got[2])

    def playing(self, window_s: float = 0.3) -> bool:
        return len(self.advances(time.monotonic() - window_s)) >= 2


Watch = MpvWatch | BrowserWatch


# --- one handoff ---------------------------------------------------------------------------


@dataclass
class Handoff:
    label: str
    gap_ms: float
    jump_ms: float
    latency_ms: float
    """ctl transfer started -> the target started (its steady line)."""
    hold_ms: float
    """How long the target held still after its first step (steady-line start - first)."""
    gap_first_ms: float
    """The gap with the target's first step as its start."""
    jump_first_ms: float
    t_start: float = math.nan
    """When the target started (its steady line at the held position), monotonic s."""


def _mpv_end(src: MpvWatch, after: float) -> float | None:
    marks = [src.first_event(name, True, after) for name in ("pause", "core-idle", "idle-active")]
    gone = next((t for t, p in src.samples(after) if p is None), None)
    found = [t for t in [*marks, gone] if t is not None]
    return min(found) if found else None


def _tab_end(src: BrowserWatch, after: float) -> float | None:
    """When the tab's line reached the position its element had when pause() was
    called on it (else that call's own stamp, or the first paused sample)."""
    t_paused = src.first_event("pause", True, after)
    if t_paused is None:
        return None
    calls = [(src._mono(t), pos) for t, pos in list(src.pauses) if after < src._mono(t) <= t_paused]
    if not calls:
        return t_paused
    t_call, held = calls[-1]
    before = src.advances(t_call - SETTLE_S, t_call)
    fit = [x for x in before if x[0] >= before[-1][0] - SOURCE_FIT_S] if before else []
    if len(fit) < 5:
        return t_call
    line = _line(fit)
    if line.rate <= 0:
        return t_call
    return line.t0 + (held - line.p0) / line.rate


def _source_end(src: Watch, after: float) -> float | None:
    return _tab_end(src, after) if isinstance(src, BrowserWatch) else _mpv_end(src, after)


def _held_before(tgt: Watch, unpaused: float, t_step: float) -> float:
    held = [p for _, p in tgt.samples(unpaused - 0.3, t_step) if p is not None]
    if len(held) < 2:
        raise RuntimeError(f"{tgt.name}: no held position seen before playback started")
    return held[-2]


def measure(label: str, env: dict[str, str], src: Watch, tgt: Watch, target: str) -> Handoff:
    """`ctl transfer target`, and what the two outputs did (module docstring)."""
    t_cmd = time.monotonic()
    ctl(env, "transfer", target)
    unpaused = tgt.wait_event("pause", False, t_cmd)
    t_step, p_step = tgt.wait_advancing(unpaused)
    p_held = _held_before(tgt, unpaused, t_step)
    deadline = time.monotonic() + WAIT_S
    while (src_end := _source_end(src, t_cmd)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: the source never stopped")
        time.sleep(0.01)
    time.sleep(max(0.0, t_step + AFTER_START_S + 0.1 - time.monotonic()))
    before = src.advances(t_cmd - SETTLE_S, src_end)
    if len(before) < 5:
        raise RuntimeError(f"{label}: the source was not playing steadily before the transfer")
    src_line = _line([x for x in before if x[0] >= before[-1][0] - SOURCE_FIT_S] or before)
    # The first step, moved back by how far it had advanced from where it was held:
    t_first = t_step - (p_step - p_held)
    # ... and where the target's steady line (after START_SKIP_S) was at the held
    # position: what it really played from, once any hold right after starting is over.
    steady = tgt.advances(t_step + START_SKIP_S, t_step + AFTER_START_S)
    if len(steady) < 5:
        raise RuntimeError(f"{label}: the target did not play on steadily after starting")
    tgt_line = _line(steady)
    t_start = tgt_line.t0 + (p_held - tgt_line.p0) / tgt_line.rate
    jump = p_held - src_line.at(t_start)
    return Handoff(
        label,
        ms(t_start - src_end),
        ms(jump),
        ms(t_start - t_cmd),
        ms(t_start - t_first),
        ms(t_first - src_end),
        ms(p_held - src_line.at(t_first)),
        t_start,
    )


def _rewind_if_late(remote: Remote, watch: Watch) -> None:
    pos = watch.position()
    if pos is not None and pos > TRACK_S - REWIND_BEFORE_END_S:
        remote.command("seek", position_ms=1000)
        deadline = time.monotonic() + WAIT_S
        while (p := watch.position()) is None or p > TRACK_S - REWIND_BEFORE_END_S:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{watch.name}: the rewind seek never happened")
            time.sleep(0.01)


def _wait_steady(watch: Watch) -> None:
    deadline = time.monotonic() + WAIT_S
    while not watch.playing():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{watch.name} is not playing")
        time.sleep(0.05)
    time.sleep(SETTLE_S)


@dataclass
class Row:
    case: str
    direction: str
    handoffs: list[Handoff] = field(default_factory=list)
    error: str = ""


def _med(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return statistics.median(v) if v else math.nan


def run_case(case: Case, rows: dict[str, Row]) -> None:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-web-")))
        srv = stack.enter_context(bench_server(tmp))
        rec = start_receiver(stack, srv, tmp, "r1", case.mpv_options)
        api = Api(srv)
        stack.callback(api.close)
        receivers: dict[str, Receiver] = {"r1": rec}
        try:
            api.wait_online([rec])
            watch_r = MpvWatch("r1", rec.socket_path, rec.proc)
            stack.callback(watch_r.close)
            poller = Poller([watch_r])
            stack.callback(poller.stop)
            driver = stack.enter_context(chromium())
            tab_id = web_login(driver, srv.url, USER, PASSWORD)
            watch_t = BrowserWatch(driver)
            stack.callback(watch_t.close)
            ctl_dir = tmp / "ctl"
            login_cli(srv, ctl_dir, bench_env(tmp), file_store=True)
            env = bench_env(tmp, ctl_dir)
            remote = Remote(srv.url, api.token)
            stack.callback(remote.close)
            print(f"  server {srv.url}; receiver r1 ({' '.join(case.mpv_options)}); tab {tab_id}")
            ids = api.track_ids()
            ctl(env, "queue", "add", *ids)
            ctl(env, "repeat", "all")
            t = time.monotonic()
            ctl(env, "play", "--device", tab_id)
            watch_t.wait_advancing(t, timeout_s=20)
            print(f"  {watch_t.clock_report()}")
            print(f"  load average {_load()}")
            print(
                f"  {'#':>3} {'handoff':<8} {'gap':>7} {'jump':>7} {'latency':>8} {'hold':>6}"
                " | by the first step:    gap    jump"
            )
            pairs = (("tab→r1", watch_t, watch_r, "r1"), ("r1→tab", watch_r, watch_t, tab_id))
            for i in range(WARMUP + ROUNDS):
                for direction, src, tgt, target in pairs:
                    _rewind_if_late(remote, src)
                    _wait_steady(src)
                    h = measure(direction, env, src, tgt, target)
                    warm = i < WARMUP
                    print(
                        f"  {'w' if warm else i - WARMUP + 1:>3} {direction:<8} "
                        f"{h.gap_ms:>+7.1f} {h.jump_ms:>+7.1f} {h.latency_ms:>8.1f} "
                        f"{h.hold_ms:>+6.1f} |                    {h.gap_first_ms:>+7.1f} "
                        f"{h.jump_first_ms:>+7.1f}"
                    )
                    if isinstance(tgt, BrowserWatch):
                        _print_tab_start(tgt, h)
                    if not warm:
                        rows[direction].handoffs.append(h)
            print(f"  {watch_t.clock_report()}")
            print(f"  load average {_load()}")
        except BaseException:
            for r in receivers.values():
                print(f"  --- {r.name}'s log (last lines):\n{r.log_tail()}")
            with contextlib.suppress(Exception):
                print("  --- server log (last lines):\n  " + "\n  ".join(srv.log[-20:]))
            raise


def _print_tab_start(tab: BrowserWatch, h: Handoff) -> None:
    """Where a start into the tab went: its clock's error, when it called play() by its
    own clock relative to T (early by its learned start delay), and when its audio
    really went on relative to T (by the bench's clock)."""
    at_ms, ran_ms, learned = tab.last_start()
    err = tab.server_clock_error_ms()
    t_planned = at_ms / 1000 - _wall_minus_mono()
    print(
        f"        tab: clock error {err:+.1f} ms; play() at {ran_ms - at_ms:+.1f} ms from T by "
        f"its clock (learned delay now {learned:.1f}); audio on at "
        f"{(h.t_start - t_planned) * 1000:+.1f} ms from T"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def _mark(value: float, target: float) -> str:
    if math.isnan(value):
        return "MISSED (no data)"
    return "met" if value <= target else "MISSED"


def handoff_results(rows: Sequence[Row]) -> list[Result]:
    print(
        f"  {'case':<22} {'n':>3} {'gap med':>8} {'gap max':>8} {'|jump| med':>10} "
        f"{'|jump| max':>10} {'hold med':>8}  targets: gap med ≤ {TARGET_GAP_MEDIAN_MS:g}, "
        f"|jump| med ≤ {TARGET_JUMP_MEDIAN_MS:g} ms"
    )
    out: list[Result] = []
    for r in rows:
        name = f"{r.case} {r.direction}"
        gaps = [abs(h.gap_ms) for h in r.handoffs]
        jumps = [abs(h.jump_ms) for h in r.handoffs]
        g, j = _med(gaps), _med(jumps)
        hold = _med([h.hold_ms for h in r.handoffs])
        gm = max(gaps) if gaps else math.nan
        jm = max(jumps) if jumps else math.nan
        flags = [
            f"gap {_mark(g, TARGET_GAP_MEDIAN_MS)}",
            f"jump {_mark(j, TARGET_JUMP_MEDIAN_MS)}",
        ]
        print(
            f"  {name:<22} {len(r.handoffs):>3} {g:>8.1f} {gm:>8.1f} {j:>10.1f} {jm:>10.1f} "
            f"{hold:>8.1f}  " + ", ".join(flags) + (f"  ({r.error})" if r.error else "")
        )
        out += [
            _result(f"[web {name}] gap |.| median", g, "ms", TARGET_GAP_MEDIAN_MS),
            _result(f"[web {name}] gap |.| max", gm, "ms"),
            _result(f"[web {name}] |jump| median", j, "ms", TARGET_JUMP_MEDIAN_MS),
            _result(f"[web {name}] |jump| max", jm, "ms"),
            _result(f"[web {name}] target's hold after its first step, median", hold, "ms"),
        ]
    return out


def _result(name: str, value: float, unit: str, target: float | None = None) -> Result:
    """A row for the summary: never a failing one (issue 17: print, mark, exit 0); a
    missed target says MISSED in its note."""
    if target is None:
        return Result(name, value, unit)
    return Result(name, value, unit, None, None, f"{_mark(value, target)} (target ≤ {target:g})")


# --- first paint and shell size ---------------------------------------------------------


def _clear_everything(driver: WebDriver, origin: str) -> None:
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
    driver.delete_all_cookies()


_FCP = (
    "const e = performance.getEntriesByType('paint')"
    ".find(x => x.name === 'first-contentful-paint'); return e ? e.startTime : null;"
)


def first_paint(driver: WebDriver, url: str) -> float:
    """Navigate to `url` in this tab; its first-contentful-paint (ms)."""
    driver.get("about:blank")
    driver.get(url)
    fcp = WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script(_FCP), f"no first-contentful-paint for {url}"
    )
    return float(fcp)


def _is_shell(url: str, origin: str) -> bool:
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != origin:
        return False
    path = parts.path
    return path in ("/", "/manifest.webmanifest", "/sw.js") or path.startswith("/app/")


_ENTRIES = """
return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
  .map(e => [e.name, e.transferSize, e.encodedBodySize, e.decodedBodySize]);
"""


def shell_bytes(driver: WebDriver, url: str, origin: str) -> tuple[float, list[list[Any]]]:
    """A cold load of the app: (sum of transferSize over the shell, the shell's entries)."""
    from selenium.webdriver.common.by import By

    driver.get("about:blank")
    _clear_everything(driver, origin)
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, tid("login-user")),
        "the app never showed its login screen",
    )
    # Resource Timing has an entry only once a fetch finished: wait until the list of
    # entries stops growing for a while (nothing else tells that the page is done).
    seen = -1
    deadline = time.monotonic() + WAIT_S
    while True:
        entries: list[list[Any]] = driver.execute_script(_ENTRIES)
        if len(entries) == seen or time.monotonic() > deadline:
            break
        seen = len(entries)
        time.sleep(0.5)
    shell = [e for e in entries if _is_shell(e[0], origin)]
    return float(sum(e[1] for e in shell)), shell


_SW_CACHED = """
const done = arguments[arguments.length - 1];
(async () => {
  if (!('serviceWorker' in navigator)) return [];
  await navigator.serviceWorker.ready;
  const out = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const req of await cache.keys()) out.push(req.url);
  }
  return out;
})().then(done, (err) => done(['error: ' + err]));
"""


def sw_cached(driver: WebDriver) -> list[str]:
    """The URLs the app's service worker holds in Cache Storage, once it is ready."""
    urls: list[str] = driver.execute_async_script(_SW_CACHED)
    return urls


def _sw_shell_kb(origin: str, cached: list[str]) -> float:
    """The service worker's shell (what it cached, and sw.js itself) as the server sends
    it with gzip offered: the sum of the bodies' bytes on the wire (KiB)."""
    import httpx

    urls = sorted({*cached, origin + "/sw.js"})
    errors = [u for u in urls if u.startswith("error: ")]
    if errors:
        print(f"  service worker: {errors[0]}")
        return math.nan
    print(f"  the service worker's shell ({len(urls)} URLs, sw.js included): gzip / plain bytes")
    total = 0
    with httpx.Client(headers={"Accept-Encoding": "gzip"}, timeout=10) as http:
        for u in urls:
            with http.stream("GET", u) as r:
                body = b"".join(r.iter_bytes())
                wire = r.num_bytes_downloaded
                enc = r.headers.get("content-encoding", "-")
            total += wire
            print(f"    {urlsplit(u).path:<40} {wire:>8} {len(body):>8}  {r.status_code} {enc}")
    kb = total / 1024
    print(f"  service worker's shell: {kb:.1f} KiB: {_mark(kb, TARGET_SHELL_KB)}")
    return kb


def page_results(srv_url: str) -> list[Result]:
    origin = srv_url.rstrip("/")
    url = origin + "/"
    out: list[Result] = []
    with chromium() as driver:
        first_paint(driver, url)  # the server is warm from here on
        cold: list[float] = []
        for _ in range(NAV_RUNS):
            driver.get("about:blank")
            _clear_everything(driver, origin)
            cold.append(first_paint(driver, url))
        warm = [first_paint(driver, url) for _ in range(NAV_RUNS)]
        print(summary("first-contentful-paint, cold browser", cold))
        print(summary("first-contentful-paint, returning (caches kept)", warm))
        total, shell = shell_bytes(driver, url, origin)
        cached = sw_cached(driver)
    print(f"  app shell on a cold load ({len(shell)} files): transfer / encoded / decoded bytes")
    for name, transfer, encoded, decoded in shell:
        print(f"    {urlsplit(name).path:<40} {transfer:>8} {encoded:>8} {decoded:>8}")
    kb = total / 1024
    enc = sum(e[2] for e in shell) / 1024
    dec = sum(e[3] for e in shell) / 1024
    print(
        f"  shell: {kb:.1f} KiB transferred ({enc:.1f} KiB bodies as sent, {dec:.1f} KiB "
        f"decoded): {_mark(kb, TARGET_SHELL_KB)} (target ≤ {TARGET_SHELL_KB:g} KB)"
    )
    if shell and enc >= dec:
        print("  NOTE: the shell's bodies came uncompressed (encoded = decoded: no gzip answer)")
    sw_kb = _sw_shell_kb(origin, cached)
    fc, fw = _med(cold), _med(warm)
    print(
        f"  first paint median: cold browser {fc:.1f} ms {_mark(fc, TARGET_FCP_MS)}, "
        f"returning {fw:.1f} ms {_mark(fw, TARGET_FCP_MS)} (target ≤ {TARGET_FCP_MS:g} ms)"
    )
    out += [
        _result("[web] first paint, cold browser, median", fc, "ms", TARGET_FCP_MS),
        _result("[web] first paint, cold browser, max", max(cold) if cold else math.nan, "ms"),
        _result("[web] first paint, returning, median", fw, "ms", TARGET_FCP_MS),
        _result("[web] app shell transferred (gzip)", kb, "KiB", TARGET_SHELL_KB),
        _result("[web] service worker's shell, gzip bodies", sw_kb, "KiB", TARGET_SHELL_KB),
    ]
    return out


def run() -> list[Result]:
    results: list[Result] = []
    all_rows: list[Row] = []
    for case in selected_cases(CASES, CASES_ENV):
        print(f"  === handoff, case {case.name}: mpv {' '.join(case.mpv_options)}")
        rows = {d: Row(case.name, d) for d in ("tab→r1", "r1→tab")}
        try:
            run_case(case, rows)
        except Exception as exc:  # one case failing must not hide the others
            for r in rows.values():
                r.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"  case {case.name} failed: {rows['tab→r1'].error}")
        all_rows += rows.values()
    results += handoff_results(all_rows)
    print("  === first paint and app shell")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="th-web-page-") as tmp,
            bench_server(Path(tmp), lambda m: make_music(m, 1, 10)) as srv,
        ):
            results += page_results(srv.url)
    except Exception as exc:
        print(f"  first paint / shell failed: {type(exc).__name__}: {exc}".splitlines()[0])
        results.append(Result("[web] first paint / shell", math.nan, "", None, None, "failed"))
    return results


__all__ = ["BrowserWatch", "chromium", "percentile", "run"]
