"""Shared CLI helpers: image discovery and reading, progress bars, JSON output."""
import json
import math
import os
import pathlib
import sys

import cv2
import numpy as np


def iter_image_paths(inputs, limit=0):
    """Files given directly, plus the files of given folders (sorted, not recursive). Any file OpenCV
    can decode counts as an image whatever its extension; hidden files are skipped."""
    out = []
    for item in inputs:
        p = pathlib.Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError("no such file or folder: %s" % p)
    return out[:limit] if limit else out


def read_image(path):
    """HxWx3 uint8 BGR image from any format OpenCV decodes (by content, not extension)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError("not an image OpenCV can decode: %s" % path)
    return img


def iter_images(paths, desc="", show_progress=None):
    """(path, BGR image) for each path, with a progress bar; undecodable files are reported and skipped."""
    for path in progress(paths, total=len(paths), desc=desc, enabled=show_progress):
        try:
            image = read_image(path)
        except ValueError as exc:
            print("skipped: %s" % exc, file=sys.stderr)
            continue
        yield path, image


def progress(iterable, total=None, desc="", enabled=None):
    """tqdm progress bar on stderr (only when stderr is a terminal, unless forced)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(path, data):
    """JSON with NaN/inf written as null (valid JSON for every reader)."""
    os.makedirs(os.path.dirname(os.path.abspath(str(path))), exist_ok=True)
    with open(str(path), "w") as f:
        json.dump(_jsonable(data), f, indent=1, sort_keys=False)
        f.write("\n")
