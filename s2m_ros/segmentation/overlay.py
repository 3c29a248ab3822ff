"""Human-readable overlay of a frame's result (for the overlay topic, the CLIs and the README)."""
import cv2
import numpy as np

# distinct BGR colours for instances (tab10-like), cycled
PALETTE = np.array([[40, 39, 214], [180, 119, 31], [44, 160, 44], [14, 127, 255], [189, 103, 148],
                    [75, 86, 140], [194, 119, 227], [34, 189, 188], [207, 190, 23], [127, 127, 127]], np.uint8)


def score_heatmap(score, width, height):
    """A score map as a BGR heat map of the given size (per-image min-max; NaN drawn black)."""
    s = np.asarray(score, dtype=np.float32)
    finite = np.isfinite(s)
    out = np.zeros(s.shape, np.uint8)
    if finite.any():
        lo, hi = float(s[finite].min()), float(s[finite].max())
        if hi > lo:
            out = np.where(finite, (s - lo) * (255.0 / (hi - lo)), 0).astype(np.uint8)
    heat = cv2.applyColorMap(out, cv2.COLORMAP_INFERNO)
    heat[~finite] = 0
    if heat.shape[:2] != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    return heat


def draw_overlay(image_bgr, instances, score_map=None, alpha=0.45, heat_alpha=0.35, prompts=()):
    """Frame with the score heat map blended in (optional), each mask tinted and outlined, its box
    and a label "#id score"; prompt boxes (optional) drawn thin in grey."""
    img = np.ascontiguousarray(image_bgr, dtype=np.uint8).copy()
    h, w = img.shape[:2]
    if score_map is not None:
        img = cv2.addWeighted(img, 1.0 - heat_alpha, score_heatmap(score_map, w, h), heat_alpha, 0)
    for p in prompts:
        x, y, bw, bh = p.box
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (200, 200, 200), 1)
    for k, m in enumerate(instances):
        colour = PALETTE[k % len(PALETTE)]
        part = m.clipped(w, h)
        if part is None:
            continue
        x0, y0, sub = part
        y1, x1 = y0 + sub.shape[0], x0 + sub.shape[1]
        roi = img[y0:y1, x0:x1]
        tinted = (roi * (1 - alpha) + colour * alpha).astype(np.uint8)
        roi[sub] = tinted[sub]
        contours, _ = cv2.findContours(sub.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(roi, contours, -1, tuple(int(c) for c in colour), 2)
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in colour), 1)
        label = "#%d %.2f" % (m.id, m.anomaly_score)
        ty = y0 - 4 if y0 > 14 else min(y1 + 14, h - 2)
        cv2.putText(img, label, (x0, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, label, (x0, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img
