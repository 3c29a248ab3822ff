"""Counters, rates and latencies of a node, published as diagnostic_msgs/DiagnosticArray.

ROS-free bookkeeping (:class:`NodeStats`) plus one function that renders it as
a message, so the numbers are testable without a node.
"""
import collections
import threading
import time


class RateMeter:
    """Events per second over a sliding window of the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s=5.0, clock=time.monotonic):
        self.window_s = float(window_s)
        self._clock = clock
        self._times = collections.deque()

    def tick(self):
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def _trim(self, now):
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self):
        now = self._clock()
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = now - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class NodeStats:
    """What a node reports: monotonic counters, rates of named event streams, stage latencies.

    Thread-safe: a node's callbacks and its processing worker update it concurrently.
    ``latency_ms`` holds the latest value per stage; :meth:`latencies` also keeps the last
    ``latency_window`` values so the report gives their median and maximum.
    """

    def __init__(self, window_s=5.0, clock=time.monotonic, latency_window=50):
        self.counters = collections.OrderedDict()
        self.rates = collections.OrderedDict()
        self.latency_ms = collections.OrderedDict()
        self.info = collections.OrderedDict()
        self.last_error = ""
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.RLock()
        self._latency_window = int(latency_window)
        self._latency_hist = collections.OrderedDict()

    def count(self, name, n=1):
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def tick(self, stream):
        with self._lock:
            meter = self.rates.get(stream)
            if meter is None:
                meter = self.rates[stream] = RateMeter(self._window_s, self._clock)
            meter.tick()

    def error(self, counter, text):
        """Count an error under ``counter`` and remember its text."""
        with self._lock:
            self.count(counter)
            self.count("errors_total")
            self.last_error = "%s: %s" % (counter, text)

    def set_info(self, name, value):
        with self._lock:
            self.info[name] = value

    def latencies(self, stage_ms):
        """Record one frame's per-stage latencies ({stage: ms})."""
        with self._lock:
            for name, value in stage_ms.items():
                self.latency_ms[name] = float(value)
                hist = self._latency_hist.get(name)
                if hist is None:
                    hist = self._latency_hist[name] = collections.deque(maxlen=self._latency_window)
                hist.append(float(value))

    def latency_history(self):
        """{stage: [the last latency_window values in ms]}."""
        with self._lock:
            return {name: list(hist) for name, hist in self._latency_hist.items()}

    def values(self):
        """Flat {key: string} view of everything, in a stable order."""
        with self._lock:
            out = collections.OrderedDict()
            for name, meter in self.rates.items():
                out["%s_rate_hz" % name] = "%.2f" % meter.rate()
            for name, value in self.counters.items():
                out[name] = str(value)
            for name, value in self.latency_ms.items():
                out["latency_%s_ms" % name] = "%.2f" % value
                hist = self._latency_hist.get(name)
                if hist:
                    ordered = sorted(hist)
                    out["latency_%s_median_ms" % name] = "%.2f" % ordered[len(ordered) // 2]
                    out["latency_%s_max_ms" % name] = "%.2f" % ordered[-1]
            for name, value in self.info.items():
                out[name] = str(value)
            out["last_error"] = self.last_error
            return out


def to_diagnostic_array(stats, name, hardware_id, level, message, stamp=None):
    """Render ``stats`` as a DiagnosticArray with one DiagnosticStatus."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=v) for k, v in stats.values().items()]
    out = DiagnosticArray(status=[status])
    if stamp is not None:
        out.header.stamp = stamp
    return out
