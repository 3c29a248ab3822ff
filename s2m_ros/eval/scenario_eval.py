"""Score tracked obstacles against a scenario's ground truth (``truth.json``), and draw a bird's-eye view.

Matching (per fused frame): the CONFIRMED tracks against the truth objects visible in that frame's
image, by horizontal distance between the track's centre and the object's box centre in the world
frame, optimal assignment (scipy) with a per-object gate ``radius_m + 0.5 * max(length, width)`` (a
large structure is fused from its visible face, whose centre is up to half its size from the box
centre). Tracks in the LiDAR frame are moved to the world with the truth ego pose at the cloud stamp.

Scores:
  recall                 objects matched by a confirmed track in at least one frame / objects visible
                         in at least ``min_visible_frames`` fused frames (also per category)
  precision              confirmed track ids matched to an object at least once / confirmed track ids
  false_confirmed        confirmed track ids never matched to any object
  median_position_error_m  median horizontal distance over all (frame, match) pairs
  frames_to_confirm      per matched object: fused frames from its first visible frame to its first match
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from s2m_ros.obstacles.poses import PoseBuffer

CATEGORY_BGR = {"fod": (60, 200, 60), "equipment": (230, 160, 40), "structure": (150, 150, 150)}


@dataclass
class EvalConfig:
    radius_m: float = 1.0
    min_visible_frames: int = 3


def _ego_poses(truth):
    buf = PoseBuffer(capacity=max(2, len(truth["frames"]) + 1), max_gap_ns=int(1e9), max_extrapolation_ns=int(0.2e9))
    for f in truth["frames"]:
        buf.add(int(f["stamp_ns"]), np.array(f["T_world_base"], float))
    return buf


def track_positions_in_world(frames, truth):
    """{frame index: [(track, xy_world)]} of the confirmed tracks of every fused frame."""
    world = truth["frames_ids"]["world"]
    T_base_lidar = np.array(truth["extrinsics"]["T_base_lidar"], float)
    poses = _ego_poses(truth)
    out = []
    for f in frames:
        if f.frame_id == world:
            T = np.eye(4)
        else:
            T_wb, _ = poses.lookup(f.stamp_ns)
            T = None if T_wb is None else T_wb @ T_base_lidar
        items = []
        for t in f.tracks:
            if t.confirmed and T is not None:
                items.append((t, (T[:3, :3] @ t.center + T[:3, 3])[:2]))
        out.append(items)
    return out


def evaluate(frames, truth, config=None):
    """Scores of a replay (list of FusedFrame) against a truth dict; see the module docstring."""
    config = config or EvalConfig()
    objects = {o["id"]: o for o in truth["objects"]}
    by_image = {int(f["stamp_ns"]): f for f in truth["frames"]}
    positions = track_positions_in_world(frames, truth)
    visible_count = {i: 0 for i in objects}
    first_visible, first_match = {}, {}
    matched_ids, confirmed_ids, errors = set(), set(), []
    matched_objects = set()
    per_frame = []
    for k, (f, items) in enumerate(zip(frames, positions)):
        tf = by_image.get(int(f.image_stamp_ns))
        visible = list(tf["visible"]) if tf is not None else []
        for i in visible:
            visible_count[i] += 1
            first_visible.setdefault(i, k)
        confirmed_ids.update(t.id for t, _ in items)
        pairs = []
        if items and visible:
            centres = np.array([objects[i]["center"][:2] for i in visible])
            gates = np.array([config.radius_m + 0.5 * max(objects[i]["size"][:2]) for i in visible])
            xy = np.array([p for _, p in items])
            dist = np.linalg.norm(xy[:, None, :] - centres[None, :, :], axis=2)
            cost = np.where(dist <= gates[None, :], dist, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if dist[r, c] <= gates[c]:
                    oid = visible[c]
                    pairs.append((items[r][0].id, oid, float(dist[r, c])))
                    matched_ids.add(items[r][0].id)
                    matched_objects.add(oid)
                    first_match.setdefault(oid, k)
                    errors.append(float(dist[r, c]))
        per_frame.append({"stamp_ns": int(f.stamp_ns), "confirmed": len(items), "matches": pairs})
    eligible = [i for i, n in visible_count.items() if n >= config.min_visible_frames]
    recall_by_cat = {}
    for cat in sorted({objects[i]["category"] for i in eligible}):
        ids = [i for i in eligible if objects[i]["category"] == cat]
        recall_by_cat[cat] = {"objects": len(ids), "found": sum(i in matched_objects for i in ids),
                              "recall": _ratio(sum(i in matched_objects for i in ids), len(ids))}
    false_ids = sorted(confirmed_ids - matched_ids)
    return {
        "recall": _ratio(sum(i in matched_objects for i in eligible), len(eligible)),
        "precision": _ratio(len(matched_ids), len(confirmed_ids)),
        "false_confirmed": len(false_ids),
        "median_position_error_m": round(float(np.median(errors)), 3) if errors else None,
        "recall_by_category": recall_by_cat,
        "objects": [{"id": i, "kind": objects[i]["kind"], "category": objects[i]["category"],
                     "visible_frames": visible_count[i], "found": i in matched_objects,
                     "frames_to_confirm": (first_match[i] - first_visible[i] + 1) if i in first_match else None}
                    for i in sorted(objects)],
        "confirmed_track_ids": sorted(confirmed_ids),
        "false_confirmed_track_ids": false_ids,
        "fused_frames": len(frames),
        "matching": {"radius_m": config.radius_m, "gate": "radius_m + 0.5 * max(length, width)",
                     "min_visible_frames": config.min_visible_frames},
    }


def _ratio(a, b):
    return round(a / b, 4) if b else None


def draw_bev(frames, truth, result=None, size=900, margin_m=4.0):
    """Bird's-eye view (BGR image): ego path, truth boxes by category, confirmed track trails."""
    objects = truth["objects"]
    ego = np.array([np.array(f["T_world_base"])[:2, 3] for f in truth["frames"]])
    pts = [ego] + [np.array([o["center"][:2]]) for o in objects]
    allp = np.vstack(pts)
    lo, hi = allp.min(axis=0) - margin_m, allp.max(axis=0) + margin_m
    span = float(max(hi - lo))
    scale = (size - 40) / span
    img = np.full((size, size, 3), 255, np.uint8)

    def px(xy):  # world x forward = image up, world y left = image left
        x, y = xy[0], xy[1]
        return int(round(20 + (hi[1] - y) * scale)), int(round(20 + (hi[0] - x) * scale))

    step = 5.0
    for gx in np.arange(math.floor(lo[0] / step) * step, hi[0] + step, step):
        cv2.line(img, px((gx, lo[1])), px((gx, hi[1])), (235, 235, 235), 1)
    for gy in np.arange(math.floor(lo[1] / step) * step, hi[1] + step, step):
        cv2.line(img, px((lo[0], gy)), px((hi[0], gy)), (235, 235, 235), 1)
    cv2.polylines(img, [np.array([px(p) for p in ego], np.int32)], False, (0, 0, 0), 2)
    cv2.putText(img, "ego", px(ego[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    found = {o["id"]: o["found"] for o in (result or {}).get("objects", [])}
    for o in objects:
        c, (l, w), yaw = o["center"], o["size"][:2], o["yaw"]
        corners = [(c[0] + dx * math.cos(yaw) - dy * math.sin(yaw), c[1] + dx * math.sin(yaw) + dy * math.cos(yaw))
                   for dx, dy in ((l / 2, w / 2), (l / 2, -w / 2), (-l / 2, -w / 2), (-l / 2, w / 2))]
        colour = CATEGORY_BGR.get(o["category"], (0, 0, 0))
        poly = np.array([px(p) for p in corners], np.int32)
        cv2.polylines(img, [poly], True, colour, 2)
        cv2.circle(img, px(c), 3, colour, -1)
        label = "%d %s%s" % (o["id"], o["kind"], "" if not found else (" found" if found[o["id"]] else " missed"))
        cv2.putText(img, label, (px(c)[0] + 6, px(c)[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    false_ids = set((result or {}).get("false_confirmed_track_ids", []))
    trails = {}
    for items in track_positions_in_world(frames, truth):
        for t, xy in items:
            trails.setdefault(t.id, []).append(xy)
    for tid, trail in sorted(trails.items()):
        colour = (200, 0, 200) if tid in false_ids else (20, 20, 220)
        for p in trail:
            cv2.circle(img, px(p), 2, colour, -1)
        cv2.circle(img, px(trail[-1]), 6, colour, 1)
        cv2.putText(img, "#%d" % tid, (px(trail[-1])[0] - 14, px(trail[-1])[1] + 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, colour, 1, cv2.LINE_AA)
    legend = [("truth: fod", CATEGORY_BGR["fod"]), ("truth: equipment", CATEGORY_BGR["equipment"]),
              ("truth: structure", CATEGORY_BGR["structure"]), ("confirmed track", (20, 20, 220)),
              ("false confirmed", (200, 0, 200)), ("ego path", (0, 0, 0))]
    for k, (text, colour) in enumerate(legend):
        cv2.putText(img, text, (size - 190, 24 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    cv2.putText(img, "grid 5 m, forward = up", (10, size - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1,
                cv2.LINE_AA)
    return img
