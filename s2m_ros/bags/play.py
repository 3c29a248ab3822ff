"""Publishing a bag's raw CDR messages over ROS 2 at their recorded times (the engine of ``s2m play``)."""
import time

NS_PER_S = 1_000_000_000


def plan_topics(bag, topics=None):
    """(playable {topic: (msgtype, rclpy class, latched)}, skipped {topic: reason}) for the bag."""
    from s2m_ros.bags.storage import rclpy_class

    selected = bag.select_topics(topics or None)  # BagError naming the bag's topics when one is missing
    playable, skipped = {}, {}
    for topic, msgtype in selected.items():
        cls = rclpy_class(msgtype)
        problem = bag.type_problem(topic)
        if cls is None:
            skipped[topic] = "%s has no rclpy message class in this environment" % msgtype
        elif problem:
            skipped[topic] = problem
        else:
            playable[topic] = (msgtype, cls, bag.latched(topic))
    return playable, skipped


class Player:
    """Publishes a bag's raw messages at their recorded times; optional /clock."""

    def __init__(self, node, bag, playable, rate=1.0, clock_hz=None, reliability="reliable", depth=10):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        from s2m_ros.ros.runtime import make_qos

        self.bag, self.rate = bag, float(rate)
        counts = bag.counts()
        self.publishers = {}
        for topic, (_, cls, latched) in playable.items():
            if latched:
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, counts.get(topic, 1)),
                                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            else:
                qos = make_qos(reliability, depth)
            self.publishers[topic] = node.create_publisher(cls, topic, qos)
        self.latched = [t for t, (_, _, latched) in playable.items() if latched]
        self.clock_pub = None
        if clock_hz:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE))
            self.clock_period = 1.0 / float(clock_hz)
            self._clock_msg = Clock()
        self.published = {t: 0 for t in self.publishers}
        self.clock_ticks = 0

    def wait_for_subscribers(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()):
                return True
            time.sleep(0.05)
        return all(p.get_subscription_count() > 0 for p in self.publishers.values())

    def wait_for_acks(self, timeout):
        """Wait until reliable subscribers acknowledged everything published; the topics still unacked."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout
        pending = []
        for topic, pub in self.publishers.items():
            left = max(0.0, deadline - time.monotonic())
            if not pub.wait_for_all_acked(Duration(nanoseconds=int(left * NS_PER_S))):
                pending.append(topic)
        return pending

    def _publish_clock(self, bag_ns):
        sec, nanosec = divmod(int(bag_ns), NS_PER_S)
        self._clock_msg.clock.sec, self._clock_msg.clock.nanosec = sec, nanosec
        self.clock_pub.publish(self._clock_msg)
        self.clock_ticks += 1

    def play_once(self, start_offset_s=0.0):
        """One pass over the bag; returns the number of messages published."""
        bag = self.bag
        if not bag.message_count:
            return 0
        start_ns = bag.start_ns + int(round(start_offset_s * NS_PER_S))
        n = 0
        if start_offset_s > 0 and self.latched:  # latched data recorded before the offset still applies
            for topic, _, data in bag.messages(self.latched, stop_ns=start_ns, raw=True):
                self.publishers[topic].publish(data)
                self.published[topic] += 1
                n += 1
        t0 = time.monotonic()
        next_clock = t0
        for topic, stamp, data in bag.messages(list(self.publishers), start_ns=start_ns, raw=True):
            due = t0 + (stamp - start_ns) / NS_PER_S / self.rate
            while True:
                now = time.monotonic()
                if self.clock_pub is not None and now >= next_clock:
                    self._publish_clock(start_ns + (now - t0) * self.rate * NS_PER_S)
                    next_clock = max(next_clock + self.clock_period, now)
                    continue
                if now >= due:
                    break
                wake = min(due, next_clock) if self.clock_pub is not None else due
                time.sleep(min(max(wake - now, 0.0), 0.1))
            self.publishers[topic].publish(data)
            self.published[topic] += 1
            n += 1
        return n
