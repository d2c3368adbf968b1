"""Progress of long runs: one live tqdm bar on a terminal, a few lines in a log.

On a terminal (the stream's isatty() is true) a single bar is redrawn in place with the label,
done/total, rate and ETA. Anywhere else (a log file, a pipe, a captured stream) a line
`label: done/total (pct) rate unit/s ETA m:ss` is written on the first update, then whenever another
10% of the items is done or `interval` seconds (30 by default) have passed since the last line,
whichever comes first, and on the last item: about a dozen lines for any run length, and a log of a
slow run still shows it moving at least every `interval` seconds. The tools write `summary()` after
the loop in both cases.
"""
import sys
import time

from tqdm import tqdm

LOG_INTERVAL = 30.0   # most seconds between two progress lines in a log
LOG_STEPS = 10        # a line in a log each time another 1/LOG_STEPS of the items is done


def _fmt_seconds(s):
    s = int(round(max(s, 0)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return '%d:%02d:%02d' % (h, m, sec) if h else '%d:%02d' % (m, sec)


def _is_terminal(stream):
    isatty = getattr(stream, 'isatty', None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


class Progress(object):
    """Counts work items; shows them as a live bar on a terminal, as spaced lines elsewhere."""

    live_bar = True        # subclasses with their own line format keep lines on a terminal too
    log_steps = LOG_STEPS  # None: lines by time only

    def __init__(self, total, label='progress', unit='img', interval=LOG_INTERVAL, stream=None):
        self.total = int(total)
        self.label = label
        self.unit = unit
        self.interval = float(interval)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.time()
        self._last = None
        self._last_step = 0
        self.live = self.live_bar and _is_terminal(self.stream)
        self._bar = None
        if self.live:
            self._bar = tqdm(total=self.total, desc=self.label, unit=self.unit, file=self.stream,
                             leave=True, dynamic_ncols=True, mininterval=0.5)

    def rate(self):
        elapsed = time.time() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self):
        rate = self.rate()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return '%s: %d/%d (%.1f%%) %.1f %s/s ETA %s' % (
            self.label, self.done, self.total, pct, rate, self.unit, _fmt_seconds(eta))

    def _step(self):
        """How many 1/log_steps fractions of the total are done (0 when lines go by time only)."""
        if not self.log_steps or self.total <= 0:
            return 0
        return min(self.done, self.total) * self.log_steps // self.total

    def update(self, n=1):
        self.done += n
        if self.live:
            if self._bar is not None:
                self._bar.update(n)
                if self.done >= self.total:
                    self.close()
            return
        now = time.time()
        step = self._step()
        if (self._last is None or now - self._last >= self.interval or step > self._last_step
                or self.done >= self.total):
            self._last, self._last_step = now, step
            self.stream.write(self.line() + '\n')
            self.stream.flush()

    def write(self, message):
        """A note on the progress stream that keeps the live bar whole: printed above the bar on a
        terminal, as a line of its own elsewhere."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + '\n')
            self.stream.flush()

    def close(self):
        """Leave the live bar (if any) in its final state on its own line; lines written after it
        start on a fresh line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def elapsed(self):
        return time.time() - self.start

    def summary(self):
        """One closing line: items, wall time, mean rate (the live bar is closed first)."""
        self.close()
        return '%s: %d %s in %s (%.1f %s/s)' % (
            self.label, self.done, self.unit, _fmt_seconds(self.elapsed()), self.rate(), self.unit)
