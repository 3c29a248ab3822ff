"""Subscriptions and timers that no message can kill (both nodes use them for every input).

A subscription takes the message's wire bytes (``raw=True``) and deserialises them here, so bytes that
are not a valid message of the topic's type (truncated CDR, a publisher of another type version) are
counted as ``malformed_messages`` with the topic and the error, not lost inside the executor. Any
exception that escapes a callback, including a defect of ours, is counted as ``processing_errors`` with
its type and text and logged (rate-limited); the node goes on with the next message. Only
KeyboardInterrupt / SystemExit (shutdown) pass through.
"""
import os
import traceback


def _log(node, text, kind):
    """Rate-limited warning, one limit per ``kind`` (rclpy throttles per call site, so each kind has its
    own line below: a flood of malformed bytes must not hide the first defect of ours)."""
    try:
        if kind == "failed":
            node.get_logger().warning(text, throttle_duration_sec=2.0)
        else:  # "malformed"
            node.get_logger().warning(text, throttle_duration_sec=2.0)
    except Exception:  # the context may be going down under a signal: counting is what matters
        pass


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
        _log(node, "%s failed (%s: %s); the node goes on" % (where, type(exc).__name__, exc), "failed")
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
            _log(node, "malformed message on '%s' skipped: %d bytes are not a valid %s" % (
                shown, len(data), type_name), "malformed")
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
