"""Progress lines for long runs: done/total, rate, ETA, at most every `interval` seconds."""
import sys
import time


def _fmt_seconds(s):
    s = int(round(max(s, 0)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return '%d:%02d:%02d' % (h, m, sec) if h else '%d:%02d' % (m, sec)


class Progress(object):
    """Counts work items and prints `label: done/total (pct) rate unit/s ETA m:ss` lines."""

    def __init__(self, total, label='progress', unit='img', interval=2.0, stream=None):
        self.total = int(total)
        self.label = label
        self.unit = unit
        self.interval = float(interval)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.time()
        self._last = 0.0

    def rate(self):
        elapsed = time.time() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self):
        rate = self.rate()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return '%s: %d/%d (%.1f%%) %.1f %s/s ETA %s' % (
            self.label, self.done, self.total, pct, rate, self.unit, _fmt_seconds(eta))

    def update(self, n=1):
        self.done += n
        now = time.time()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            self.stream.write(self.line() + '\n')
            self.stream.flush()

    def elapsed(self):
        return time.time() - self.start

    def summary(self):
        """One closing line: items, wall time, mean rate."""
        return '%s: %d %s in %s (%.1f %s/s)' % (
            self.label, self.done, self.unit, _fmt_seconds(self.elapsed()), self.rate(), self.unit)
