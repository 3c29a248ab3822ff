"""A latest-only processing worker: never falls behind its input (ROS-free, plain threading).

The camera node hands every decoded frame to :meth:`LatestOnlyWorker.submit`. One thread processes
one frame at a time; a frame that arrives while the thread is busy waits in a single slot, and a
newer frame replaces it (the replaced one is dropped and counted). So the queue never grows, and the
latency from a frame's arrival to its result is at most one processing time of the frame before it
plus its own, whatever the input rate.
"""
import threading


class LatestOnlyWorker:
    """``process(item)`` on a background thread, newest item first, one slot of backlog.

    ``on_error(item, exc)`` is called for an exception in ``process`` (the worker keeps running).
    """

    def __init__(self, process, on_error=None, name="s2m-worker"):
        self._process = process
        self._on_error = on_error
        self._cv = threading.Condition()
        self._pending = None
        self._has_pending = False
        self._busy = False
        self._stop = False
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item):
        """Queue ``item``; returns True when it replaced (dropped) an item that was still waiting."""
        with self._cv:
            replaced = self._has_pending
            if replaced:
                self.dropped += 1
            self._pending, self._has_pending = item, True
            self.submitted += 1
            self._cv.notify_all()
        return replaced

    @property
    def busy(self):
        with self._cv:
            return self._busy or self._has_pending

    def _run(self):
        while True:
            with self._cv:
                while not self._has_pending and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                self._process(item)
                ok = True
            except Exception as exc:  # the worker must survive any bad frame
                ok = False
                if self._on_error is not None:
                    try:
                        self._on_error(item, exc)
                    except Exception:
                        pass
            with self._cv:
                self._busy = False
                if ok:
                    self.processed += 1
                else:
                    self.failed += 1
                self._cv.notify_all()

    def wait_idle(self, timeout=None):
        """Block until nothing is waiting or running; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._busy and not self._has_pending, timeout)

    def stop(self, timeout=5.0):
        """Stop after the current item (a waiting item is discarded); joins the thread."""
        with self._cv:
            self._stop = True
            self._pending, self._has_pending = None, False
            self._cv.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()
