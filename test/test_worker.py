"""LatestOnlyWorker: one slot of backlog, newest wins, drops counted, errors survived."""
import threading
import time

from s2m_ros.ros.diagnostics import NodeStats
from s2m_ros.ros.worker import LatestOnlyWorker


def test_newest_waiting_item_wins_and_drops_are_counted():
    gate = threading.Event()
    done = []

    def process(item):
        if item == 0:
            gate.wait(5)  # hold the worker busy on the first item
        done.append(item)

    w = LatestOnlyWorker(process)
    assert w.submit(0) is False
    time.sleep(0.05)  # item 0 is now running
    replaced = [w.submit(k) for k in range(1, 6)]
    assert replaced == [False, True, True, True, True]  # 1 waits; 2..5 each replace the waiting one
    gate.set()
    assert w.wait_idle(5)
    assert done == [0, 5]
    assert (w.submitted, w.dropped, w.processed, w.failed) == (6, 4, 2, 0)
    assert w.stop()


def test_errors_are_reported_and_the_worker_goes_on():
    seen = []

    def process(item):
        if item == "bad":
            raise ValueError("boom")
        seen.append(item)

    errors = []
    w = LatestOnlyWorker(process, on_error=lambda item, exc: errors.append((item, str(exc))))
    w.submit("bad")
    assert w.wait_idle(5)
    w.submit("good")
    assert w.wait_idle(5)
    assert errors == [("bad", "boom")] and seen == ["good"] and (w.processed, w.failed) == (1, 1)
    w.stop()


def test_stop_discards_waiting_and_joins():
    gate = threading.Event()
    done = []
    w = LatestOnlyWorker(lambda item: (gate.wait(5), done.append(item)))
    w.submit(1)
    time.sleep(0.05)
    w.submit(2)
    threading.Timer(0.1, gate.set).start()
    assert w.stop(5)
    assert done == [1]  # 2 was waiting and is discarded


def test_every_submitted_item_is_processed_or_dropped_under_load():
    w = LatestOnlyWorker(lambda item: time.sleep(0.002))
    for k in range(500):
        w.submit(k)
        if k % 7 == 0:
            time.sleep(0.001)
    assert w.wait_idle(10)
    assert w.processed + w.dropped == w.submitted == 500 and w.dropped > 0
    w.stop()


def test_node_stats_latency_window_and_thread_safety():
    stats = NodeStats(latency_window=3)
    for v in (10.0, 30.0, 20.0, 40.0):
        stats.latencies({"score": v})
    values = stats.values()
    assert values["latency_score_ms"] == "40.00"  # latest
    assert values["latency_score_median_ms"] == "30.00"  # of the last 3: 20, 30, 40
    assert values["latency_score_max_ms"] == "40.00"

    def hammer(k):
        for i in range(2000):
            stats.count("n")
            stats.latencies({"s%d" % (i % 17): float(i)})
            stats.set_info("k%d" % k, i)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        stats.values()  # iterating while others insert must not raise
    for t in threads:
        t.join()
    assert stats.values()["n"] == "8000"


def test_wait_idle_times_out_while_busy():
    gate = threading.Event()
    w = LatestOnlyWorker(lambda item: gate.wait(5))
    w.submit(1)
    assert w.wait_idle(0.05) is False and w.busy
    gate.set()
    assert w.wait_idle(5) and not w.busy
    w.stop()
