"""Readers for anomaly-segmentation benchmarks, as `s2m eval` consumes them.

Two on-disk layouts are understood:

``roadanomaly`` (RoadAnomaly, Lis et al. 2019)::

    DIR/frames/<name>.<ext>                          image (any format OpenCV decodes)
    DIR/frames/<name>.labels/labels_semantic.png     0 background, 2 anomaly (default anomaly value 2, no void)
    DIR/frames/<name>.labels/labels_instance.png     0 background, 1..K object id (optional, per frame)

``folders`` (SegmentMeIfYouCan and similar)::

    DIR/images/<stem>.<ext>                          image; the extension may lie (JPEG bytes in .png, WebP, ...)
    DIR/labels_masks/<stem>.<ext>                    label (default anomaly 1, void 255), or
    DIR/labels_masks/<stem>_labels_semantic.<ext>    the official SegmentMeIfYouCan naming
    instance ids, optional, first found of:
    DIR/labels_instances/<stem>.<ext>, DIR/labels_instance/<stem>.<ext>,
    DIR/labels_masks/<stem>_labels_instance.<ext>

Images are matched to labels by name, never by position, and samples come in sorted name order so every run
sees the same sequence. Files whose names start with "." and obvious non-image files (text, JSON, ...) are
ignored; anything else in an images folder is an image, decoded by content.

Missing labels: an image without a label is a broken dataset, and metrics over a silently smaller set would
not be comparable with published numbers, so ``open_dataset`` raises :class:`DatasetError` naming the first
such images. ``on_missing="skip"`` evaluates the rest instead and records every skipped name with its reason
in ``Dataset.skipped`` (reason -> names), which the CLI reports. Labels without an image are only recorded.

Errors about the data (size mismatch, undecodable file, ambiguous names) and about the arguments of
``open_dataset`` are :class:`DatasetError` (a ValueError) and name the offending file or value. Opening
checks the layout only: a sample whose files turn out unreadable, undecodable or of mismatched sizes
raises DatasetError when it is loaded (``dataset[i]``, iteration, ``Sample.image``), so a caller can skip
that one sample and go on (``s2m eval`` does, and reports it).
"""
import pathlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from s2m_ros.files import decode_image, read_image

LAYOUTS = ("roadanomaly", "folders")
#: Label values per layout: (anomaly values, void values). Pixels with neither value are "normal".
DEFAULTS = {"roadanomaly": ((2,), ()), "folders": ((1,), (255,))}
MISSING_POLICIES = ("error", "skip")

# Extensions that are never images: ignored when listing image folders (README files, frame lists, ...).
_NOT_IMAGES = frozenset((".txt", ".json", ".md", ".csv", ".yaml", ".yml", ".xml", ".db", ".ini", ".py", ".zip",
                         ".tar", ".gz", ".npy", ".npz"))
_RA_SEMANTIC = "labels_semantic.png"
_RA_INSTANCE = "labels_instance.png"
_INSTANCE_DIRS = ("labels_instances", "labels_instance")


class DatasetError(ValueError):
    """The dataset on disk is not what the layout promises; the message names the file or folder."""


@dataclass
class Sample:
    """One evaluation image with its ground truth.

    ``label`` is the raw label array (HxW, as stored); ``anomaly`` and ``void`` are boolean HxW masks derived
    from it (disjoint); ``instances`` is HxW int32 object ids (0 = none) or None when the dataset has no
    instance labels for this image. ``image`` (HxWx3 uint8 BGR) is decoded on first access when the dataset
    was opened with ``load_images=False``; its size is checked against the label either way.
    """

    name: str
    image_path: pathlib.Path
    label_path: pathlib.Path
    label: np.ndarray
    anomaly: np.ndarray
    void: np.ndarray
    instances: Optional[np.ndarray] = None
    instance_path: Optional[pathlib.Path] = None
    _image: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = _read_image_checked(self.image_path, self.label.shape, self.label_path)
        return self._image

    @property
    def valid(self) -> np.ndarray:
        """Pixels that count in metrics (not void)."""
        return ~self.void

    @property
    def shape(self) -> Tuple[int, int]:
        """(height, width) of the label, hence of the image."""
        return (int(self.label.shape[0]), int(self.label.shape[1]))


@dataclass(frozen=True)
class _Entry:
    name: str
    image_path: pathlib.Path
    label_path: pathlib.Path
    instance_path: Optional[pathlib.Path]


class Dataset:
    """Sized, re-iterable, indexable sequence of :class:`Sample` (files are read on iteration, not at open)."""

    def __init__(self, root, layout, entries, anomaly_values, void_values, skipped=None, load_images=True):
        self.root = pathlib.Path(root)
        self.layout = layout
        self.name = self.root.resolve().name
        self.anomaly_values = tuple(anomaly_values)
        self.void_values = tuple(void_values)
        self.entries = list(entries)
        self.skipped = dict(skipped or {})
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Sample]:
        for entry in self.entries:
            yield self._load(entry)

    def __getitem__(self, index: int) -> Sample:
        return self._load(self.entries[index])

    @property
    def names(self) -> List[str]:
        return [e.name for e in self.entries]

    @property
    def n_with_instances(self) -> int:
        return sum(e.instance_path is not None for e in self.entries)

    def describe(self) -> dict:
        """The configuration in JSON-ready form (for the `s2m eval` report)."""
        return {"path": str(self.root), "name": self.name, "layout": self.layout, "n_images": len(self),
                "n_with_instances": self.n_with_instances, "anomaly_values": list(self.anomaly_values),
                "void_values": list(self.void_values),
                "skipped": {reason: len(names) for reason, names in self.skipped.items()}}

    def __repr__(self):
        return "Dataset(%r, layout=%r, n=%d)" % (str(self.root), self.layout, len(self))

    def _load(self, entry: _Entry) -> Sample:
        label = _read_label(entry.label_path)
        anomaly = np.isin(label, self.anomaly_values)
        void = np.isin(label, self.void_values) if self.void_values else np.zeros(label.shape, bool)
        instances = None
        if entry.instance_path is not None:
            inst = _read_label(entry.instance_path)
            if inst.shape != label.shape:
                raise DatasetError("instance label %s is %dx%d but the semantic label %s is %dx%d" % (
                    entry.instance_path, inst.shape[1], inst.shape[0], entry.label_path, label.shape[1],
                    label.shape[0]))
            instances = inst.astype(np.int32)
        image = _read_image_checked(entry.image_path, label.shape, entry.label_path) if self.load_images else None
        return Sample(entry.name, entry.image_path, entry.label_path, label, anomaly, void, instances,
                      entry.instance_path, image)


def open_dataset(path, layout: Optional[str] = None, anomaly_values=None, void_values=None, limit: int = 0,
                 on_missing: str = "error", load_images: bool = True) -> Dataset:
    """Open the dataset at ``path``.

    layout: "roadanomaly" or "folders"; detected from the folder structure when None.
    anomaly_values / void_values: an int or a sequence of ints; None takes the layout's defaults
    (:data:`DEFAULTS`); an empty sequence means none. A value may not be both.
    limit: keep only the first ``limit`` samples in sorted order (0 = all).
    on_missing: "error" (default) raises when an image has no label; "skip" drops it and records it in
    ``Dataset.skipped``.
    load_images: decode each image during iteration (True) or on first access of ``Sample.image``.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise DatasetError(("dataset %s is not a folder" if root.exists() else "dataset folder does not exist: %s")
                           % root)
    if layout is None:
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError("unknown dataset layout %r (known: %s)" % (layout, ", ".join(LAYOUTS)))
    if on_missing not in MISSING_POLICIES:
        raise DatasetError("on_missing must be one of %s, not %r" % (MISSING_POLICIES, on_missing))
    if limit < 0:
        raise DatasetError("limit must be >= 0, not %r" % (limit,))
    default_anomaly, default_void = DEFAULTS[layout]
    anomaly = _values(default_anomaly if anomaly_values is None else anomaly_values, "anomaly_values")
    void = _values(default_void if void_values is None else void_values, "void_values")
    if not anomaly:
        raise DatasetError("at least one anomaly value is needed")
    both = sorted(set(anomaly) & set(void))
    if both:
        raise DatasetError("label value(s) %s given as both anomaly and void" % both)

    entries, missing, orphans = (_scan_roadanomaly if layout == "roadanomaly" else _scan_folders)(root)
    skipped = {}
    if missing:
        if on_missing == "error":
            raise DatasetError("%d image(s) without a label in %s (%s layout), e.g. %s; pass on_missing='skip' "
                               "to evaluate the rest" % (len(missing), root, layout,
                                                         ", ".join(str(p) for p in missing[:3])))
        skipped["missing_label"] = [p.name for p in missing]
    if orphans:
        skipped["label_without_image"] = [p.name for p in orphans]
    if not entries:
        raise DatasetError("no labelled images found in %s (%s layout)" % (root, layout))
    if limit:
        entries = entries[:limit]
    return Dataset(root, layout, entries, anomaly, void, skipped, load_images)


def detect_layout(path) -> str:
    """"roadanomaly" when ``path/frames`` holds ``*.labels`` folders, "folders" when ``path/images`` and
    ``path/labels_masks`` exist; DatasetError naming both when neither or both match."""
    root = pathlib.Path(path)
    frames = root / "frames"
    is_ra = frames.is_dir() and any(p.is_dir() and p.name.endswith(".labels") for p in frames.iterdir())
    is_folders = (root / "images").is_dir() and (root / "labels_masks").is_dir()
    if is_ra and is_folders:
        raise DatasetError("%s matches both layouts (frames/*.labels and images/ + labels_masks/); "
                           "choose one with layout=" % root)
    if is_ra:
        return "roadanomaly"
    if is_folders:
        return "folders"
    raise DatasetError("cannot tell the layout of %s: looked for frames/<name>.labels/ folders (roadanomaly) "
                       "and for images/ + labels_masks/ folders (folders); found neither" % root)


# ----------------------------------------------------------------------------------------------- scanning

def _image_files(folder: pathlib.Path) -> List[pathlib.Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in _NOT_IMAGES)


def _by_stem(files: Iterable[pathlib.Path], folder: pathlib.Path) -> Dict[str, pathlib.Path]:
    out = {}
    for p in files:
        if p.stem in out:
            raise DatasetError("ambiguous names in %s: %s and %s share the stem %r" % (folder, out[p.stem].name,
                                                                                       p.name, p.stem))
        out[p.stem] = p
    return out


def _scan_roadanomaly(root: pathlib.Path):
    frames = root / "frames"
    if not frames.is_dir():
        raise DatasetError("roadanomaly layout: no frames/ folder in %s" % root)
    images = _by_stem(_image_files(frames), frames)
    entries, missing = [], []
    for stem in sorted(images):
        labels = frames / (stem + ".labels")
        semantic = labels / _RA_SEMANTIC
        if not semantic.is_file():
            missing.append(images[stem])
            continue
        instance = labels / _RA_INSTANCE
        entries.append(_Entry(stem, images[stem], semantic, instance if instance.is_file() else None))
    orphans = sorted(p for p in frames.iterdir()
                     if p.is_dir() and p.name.endswith(".labels") and p.name[:-len(".labels")] not in images)
    return entries, missing, orphans


def _scan_folders(root: pathlib.Path):
    image_dir, label_dir = root / "images", root / "labels_masks"
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise DatasetError("folders layout: no %s/ folder in %s" % (d.name, root))
    images = _by_stem(_image_files(image_dir), image_dir)
    label_files = _image_files(label_dir)
    instance_in_labels = _by_stem((p for p in label_files if p.stem.endswith("_labels_instance")), label_dir)
    labels = _by_stem((p for p in label_files if not p.stem.endswith("_labels_instance")), label_dir)
    instance_dirs = [root / d for d in _INSTANCE_DIRS if (root / d).is_dir()]
    instance_maps = [_by_stem(_image_files(d), d) for d in instance_dirs]
    entries, missing, used = [], [], set()
    for stem in sorted(images):
        label = labels.get(stem)
        key = stem
        if label is None:
            key = stem + "_labels_semantic"
            label = labels.get(key)
        if label is None:
            missing.append(images[stem])
            continue
        used.add(key)
        instance = next((m[stem] for m in instance_maps if stem in m), None)
        if instance is None:
            instance = instance_in_labels.get(stem + "_labels_instance")
        entries.append(_Entry(stem, images[stem], label, instance))
    orphans = sorted(p for k, p in labels.items() if k not in used)
    return entries, missing, orphans


# ----------------------------------------------------------------------------------------------- reading

def _values(values, what) -> Tuple[int, ...]:
    if isinstance(values, (int, np.integer)):
        values = (values,)
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise DatasetError("%s must be integers, got %r" % (what, v))
        out.append(int(v))
    return tuple(sorted(set(out)))


def _read_label(path: pathlib.Path) -> np.ndarray:
    """HxW label array as stored (8 or 16 bit); a colour label is accepted only when its channels agree."""
    data = np.fromfile(str(path), dtype=np.uint8)
    try:  # header checked first: a label claiming a huge size is refused before it is decoded
        label = decode_image(data, cv2.IMREAD_UNCHANGED)[0]
    except ValueError as exc:
        raise DatasetError("cannot read label %s: %s" % (path, exc)) from None
    if label.ndim == 3:
        if label.shape[2] == 4:
            label = label[:, :, :3]
        if not all(np.array_equal(label[:, :, 0], label[:, :, c]) for c in range(1, label.shape[2])):
            raise DatasetError("label %s has %d differing colour channels; expected a single-channel image of "
                               "label values" % (path, label.shape[2]))
        label = np.ascontiguousarray(label[:, :, 0])
    return label


def _read_image_checked(path: pathlib.Path, label_shape: Sequence[int], label_path: pathlib.Path) -> np.ndarray:
    try:
        image = read_image(path)
    except ValueError as exc:
        raise DatasetError(str(exc))
    if image.shape[:2] != tuple(label_shape[:2]):
        raise DatasetError("size mismatch: image %s is %dx%d but its label %s is %dx%d" % (
            path, image.shape[1], image.shape[0], label_path, label_shape[1], label_shape[0]))
    return image


__all__ = ["LAYOUTS", "DEFAULTS", "DatasetError", "Sample", "Dataset", "open_dataset", "detect_layout"]
