"""A probe rclpy node that feeds the s2m_ros nodes and reads their diagnostics (self-check and tests)."""
import numpy as np


class Probe:
    """A test-side rclpy node: publishers for node inputs, a /diagnostics collector."""

    def __init__(self, context, name="s2m_test_probe"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.diagnostics = {}  # status name -> {key: value}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self._rclpy = rclpy

    def _on_diag(self, msg):
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def publisher(self, msg_type, topic, reliable=False, depth=10):
        from s2m_ros.ros.runtime import make_qos

        return self.node.create_publisher(msg_type, topic, make_qos("reliable" if reliable else "best_effort", depth))

    def collect(self, msg_type, topic, reliable=True, depth=50):
        """Subscribe to ``topic``; returns the list every received message is appended to."""
        from s2m_ros.ros.runtime import make_qos

        received = []
        self.node.create_subscription(msg_type, topic, received.append,
                                      make_qos("reliable" if reliable else "best_effort", depth))
        return received

    def spin_until(self, predicate, timeout=15.0):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def wait_for_subscriber(self, pub, timeout=15.0):
        return self.spin_until(lambda: pub.get_subscription_count() > 0, timeout)

    def diag(self, node_name):
        """The latest diagnostic values of the node whose status name starts with ``/node_name``."""
        for name, values in self.diagnostics.items():
            if name.startswith("/" + node_name + ":") or name.startswith(node_name + ":"):
                return values
        return {}

    def counter(self, node_name, key):
        return int(self.diag(node_name).get(key, "0"))

    def publish_until(self, pub, msg, node_name, key, at_least, timeout=20.0):
        """Publish ``msg`` (best effort: repeat every 0.5 s) until diagnostics show ``key`` >= at_least."""
        import time

        deadline = time.monotonic() + timeout
        last = 0.0
        while time.monotonic() < deadline:
            if self.counter(node_name, key) >= at_least:
                return True
            if time.monotonic() - last > 0.5:
                pub.publish(msg)
                last = time.monotonic()
            self.executor.spin_once(timeout_sec=0.05)
        return self.counter(node_name, key) >= at_least

    def close(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown()


def synthetic_image(width=64, height=48, seed=0):
    """Random rgb8 pixels (only decoding is exercised)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)


def velodyne_like_cloud(n, stamp_ns, n_nan=0, seed=0, frame_id="lidar"):
    """A PointCloud2 with a padded Velodyne-like layout (x, y, z, intensity float32, ring uint16, 32-byte points)."""
    from s2m_ros.ros.conversions.pointcloud import structured_to_cloud
    from s2m_ros.ros.conversions.s2m_msgs import make_header

    rng = np.random.default_rng(seed)
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "ring"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
                      "offsets": [0, 4, 8, 16, 20], "itemsize": 32})
    pts = np.zeros(n, dtype=dtype)
    for axis in "xyz":
        pts[axis] = rng.uniform(-20, 20, n)
    pts["intensity"] = rng.uniform(0, 255, n)
    pts["ring"] = rng.integers(0, 32, n)
    pts["x"][:n_nan] = np.nan
    return structured_to_cloud(pts, header=make_header(stamp_ns, frame_id))


def mask_array(stamp_ns, n_masks, frame_id="cam"):
    """An OodMaskArray with ``n_masks`` small rectangular masks in a 64x48 image."""
    from s2m_ros.ros.conversions.s2m_msgs import frame_masks_to_msg
    from s2m_ros.types import FrameMasks, InstanceMask

    masks = [InstanceMask(id=k + 1, roi=(10 * k, 5, 8, 6), mask=np.ones((6, 8), bool), anomaly_score=0.5 + k,
                          quality=0.9, prompt_box=(10 * k, 5, 8, 6)) for k in range(n_masks)]
    return frame_masks_to_msg(FrameMasks(stamp_ns=stamp_ns, frame_id=frame_id, width=64, height=48, masks=masks,
                                         scorer="selfcheck", segmenter="selfcheck"))
