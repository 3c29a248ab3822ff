"""Match camera results to LiDAR clouds by header time (ROS-free).

A bounded buffer of the most recent clouds; each mask array is matched to the
cloud with the nearest stamp within a tolerance. A mask newer than every
buffered cloud (beyond the tolerance) may still get its cloud: it waits in a
single "pending" slot (latest-only; a newer pending mask replaces it) and is
retried when the next cloud arrives. Nothing here grows without bound.

Unmatched reasons:
  no_cloud_yet  the buffer was empty and the item was replaced in the pending slot before any
                cloud arrived (an item arriving before the first cloud waits for it)
  too_old       the mask is older than the oldest buffered cloud by more than the tolerance
  too_new       the mask is newer than the newest cloud by more than the tolerance and was
                replaced in the pending slot (or the newer cloud did not match it either)
  gap           clouds exist on both sides of the mask but none within the tolerance
Clouds whose stamp goes backwards (bag loop, clock reset) clear the buffer ("time_reset").
"""
import bisect
from dataclasses import dataclass
from typing import Any, Optional

MATCHED = "matched"
NO_CLOUD_YET = "no_cloud_yet"
TOO_OLD = "too_old"
TOO_NEW = "too_new"
GAP = "gap"
PENDING = "pending"
REASONS = (NO_CLOUD_YET, TOO_OLD, TOO_NEW, GAP)


@dataclass
class Match:
    item: Any  # the mask-side payload
    cloud: Any  # the cloud-side payload
    item_stamp_ns: int
    cloud_stamp_ns: int

    @property
    def dt_ns(self):
        return self.item_stamp_ns - self.cloud_stamp_ns


class NearestTimeMatcher:
    """Latest-only nearest-stamp matching of items (mask arrays) to a short buffer of clouds."""

    def __init__(self, tolerance_ns, capacity=10, backwards_reset_ns=0):
        if tolerance_ns < 0:
            raise ValueError("tolerance_ns must be >= 0")
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.tolerance_ns = int(tolerance_ns)
        self.capacity = int(capacity)
        self.backwards_reset_ns = int(backwards_reset_ns)
        self._stamps = []  # sorted cloud stamps
        self._clouds = []
        self._pending = None  # (stamp_ns, item)
        self.unmatched = {reason: 0 for reason in REASONS}
        self.matched = 0
        self.resets = 0

    def __len__(self):
        return len(self._stamps)

    @property
    def pending(self):
        return self._pending is not None

    def reset(self):
        self._stamps.clear()
        self._clouds.clear()
        self._pending = None

    def add_cloud(self, stamp_ns, cloud):
        """Buffer a cloud. Returns (Match or None, reset).

        The match is the pending item's, if it matches now; ``reset`` is True when the
        cloud's stamp went backwards and the buffer (and pending item) were cleared.
        """
        stamp_ns = int(stamp_ns)
        reset = False
        if self._stamps and stamp_ns < self._stamps[-1] - self.backwards_reset_ns:
            self.reset()
            self.resets += 1
            reset = True
        i = bisect.bisect_right(self._stamps, stamp_ns)
        self._stamps.insert(i, stamp_ns)
        self._clouds.insert(i, cloud)
        while len(self._stamps) > self.capacity:
            self._stamps.pop(0)
            self._clouds.pop(0)
        match = None
        if self._pending is not None:
            pending_stamp, item = self._pending
            self._pending = None
            match, _ = self._match(pending_stamp, item)
        return match, reset

    def add_item(self, stamp_ns, item):
        """Offer a mask-side item. Returns (Match or None, reason)."""
        return self._match(int(stamp_ns), item)

    def _match(self, stamp_ns, item):
        """Match, or park in the pending slot, or count the unmatched reason. Returns (Match or None, reason)."""
        match, reason = self._find(stamp_ns, item)
        if reason == MATCHED:
            self.matched += 1
        elif reason != PENDING:
            self.unmatched[reason] += 1
        return match, reason

    def _find(self, stamp_ns, item):
        if not self._stamps:  # the first cloud may still come: wait in the pending slot
            return self._park(stamp_ns, item, NO_CLOUD_YET)
        i = bisect.bisect_left(self._stamps, stamp_ns)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self._stamps):
                if best is None or abs(self._stamps[j] - stamp_ns) < abs(self._stamps[best] - stamp_ns):
                    best = j
        if abs(self._stamps[best] - stamp_ns) <= self.tolerance_ns:
            return Match(item, self._clouds[best], stamp_ns, self._stamps[best]), MATCHED
        if stamp_ns > self._stamps[-1]:  # its cloud may still come: wait in the one pending slot
            return self._park(stamp_ns, item, TOO_NEW)
        if stamp_ns < self._stamps[0]:
            return None, TOO_OLD
        return None, GAP

    def _park(self, stamp_ns, item, reason_if_replaced):
        if self._pending is not None:
            self.unmatched[reason_if_replaced] += 1  # replaced by a newer item: latest-only
        self._pending = (stamp_ns, item)
        return None, PENDING

    def oldest_stamp(self) -> Optional[int]:
        return self._stamps[0] if self._stamps else None
