"""Counters, rates and latencies of a node, published as diagnostic_msgs/DiagnosticArray.

ROS-free bookkeeping (:class:`NodeStats`) plus one function that renders it as
a message, so the numbers are testable without a node.
"""
import collections
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
    """What a node reports: monotonic counters, rates of named event streams, latest stage latencies."""

    def __init__(self, window_s=5.0, clock=time.monotonic):
        self.counters = collections.OrderedDict()
        self.rates = collections.OrderedDict()
        self.latency_ms = collections.OrderedDict()
        self.info = collections.OrderedDict()
        self.last_error = ""
        self._window_s = window_s
        self._clock = clock

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def tick(self, stream):
        meter = self.rates.get(stream)
        if meter is None:
            meter = self.rates[stream] = RateMeter(self._window_s, self._clock)
        meter.tick()

    def error(self, counter, text):
        """Count an error under ``counter`` and remember its text."""
        self.count(counter)
        self.count("errors_total")
        self.last_error = "%s: %s" % (counter, text)

    def values(self):
        """Flat {key: string} view of everything, in a stable order."""
        out = collections.OrderedDict()
        for name, meter in self.rates.items():
            out["%s_rate_hz" % name] = "%.2f" % meter.rate()
        for name, value in self.counters.items():
            out[name] = str(value)
        for name, value in self.latency_ms.items():
            out["latency_%s_ms" % name] = "%.2f" % value
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
