"""Subscriptions and timers that no message can kill (both nodes use them for every input).

A subscription takes the message's wire bytes (``raw=True``) and deserialises them here, so bytes that
are not a valid message of the topic's type (truncated CDR, a publisher of another type version) are
counted as ``malformed_messages`` with the topic and the error, not lost inside the executor. Any
exception that escapes a callback, including a defect of ours, is counted as ``processing_errors`` with
its type and text and logged (rate-limited); the node goes on with the next message. Only
KeyboardInterrupt / SystemExit (shutdown) pass through.
"""
import os
import time
import traceback


LOG_PERIOD_S = 2.0  # at most one warning per kind and input in this period (every event is counted)


class _RateLimit:
    """One warning per ``LOG_PERIOD_S`` for each key (an input and a kind of problem): bad bytes on one
    topic, or a flood of them, never hide the first problem on another topic, nor a defect of ours.
    rclpy's own ``throttle_duration_sec`` is one limit per line of code, shared by every topic."""

    def __init__(self):
        self._last = {}

    def warn(self, node, key, text):
        now = time.monotonic()
        if now - self._last.get(key, -LOG_PERIOD_S) < LOG_PERIOD_S:
            return
        self._last[key] = now
        try:
            node.get_logger().warning(text)
        except Exception:  # the context may be going down under a signal: counting is what matters
            pass


_RATE = _RateLimit()


def _origin(exc):
    """``file.py:line`` where ``exc`` was raised: a defect is found from the diagnostics alone."""
    frames = traceback.extract_tb(exc.__traceback__)
    return "%s:%d" % (os.path.basename(frames[-1].filename), frames[-1].lineno) if frames else "?"


def guarded_call(node, where, fn, *args):
    """``fn(*args)``; an exception is counted on ``node.stats`` as ``processing_errors`` and logged."""
    try:
        return fn(*args)
    except Exception as exc:
        text = "%s: %s: %s (raised at %s)" % (where, type(exc).__name__, exc, _origin(exc))
        node.stats.error("processing_errors", text)
        node.stats.set_info("last_processing_error", text)
        _RATE.warn(node, (id(node), where, "failed"),
                   "%s failed (%s: %s); the node goes on" % (where, type(exc).__name__, exc))
        return None


def subscribe(node, msg_type, topic, callback, qos):
    """``node.create_subscription`` whose ``callback(msg)`` runs guarded on self-deserialised messages."""
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.serialization import deserialize_message

    type_name = "%s/%s" % (msg_type.__module__.split(".")[0], msg_type.__name__)
    resolve = getattr(node, "resolve_topic_name", None)
    shown = resolve(topic) if resolve is not None else topic  # the name an operator sees (namespace, remaps)
    where = "callback of '%s'" % shown

    def on_bytes(data):
        try:
            msg = deserialize_message(data, msg_type)
        except Exception as exc:
            node.stats.error("malformed_messages", "'%s': %d bytes are not a valid %s (%s)" % (
                shown, len(data), type_name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            _RATE.warn(node, (id(node), shown, "malformed"), "malformed message on '%s' skipped: %d bytes are not a "
                       "valid %s" % (shown, len(data), type_name))
            return
        guarded_call(node, where, callback, msg)

    def on_lost(info):  # the middleware saw samples it could not deliver (best effort, large messages)
        n = max(int(info.total_count_change), 1)
        node.stats.error("messages_lost", "'%s': %d message(s) lost in transport" % (shown, n))
        if n > 1:
            node.stats.count("messages_lost", n - 1)

    return node.create_subscription(msg_type, topic, on_bytes, qos, raw=True,
                                    event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))


def timer(node, period_s, callback, where="timer"):
    """``node.create_timer`` with a guarded callback."""
    return node.create_timer(period_s, lambda: guarded_call(node, where, callback))
