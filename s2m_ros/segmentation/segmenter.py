"""The promptable-segmenter interface shared by every segmenter (GrabCut, MobileSAM, ...).

A segmenter turns prompts (boxes + points, in full-image pixel coordinates) into one mask per
prompt. It sees the whole frame once per call, so an implementation with an image embedding
(MobileSAM) encodes the image once and decodes all prompts in one batch.
"""
import math
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from s2m_ros.types import Box


@dataclass
class Segment:
    """The segmenter's answer to one prompt: a boolean mask cropped to ``roi`` (image pixels)."""

    prompt_index: int
    roi: Box  # x, y, w, h in image pixels
    mask: np.ndarray  # bool, roi h x roi w
    quality: float = math.nan  # the segmenter's own confidence (e.g. predicted IoU); NaN if none

    def __post_init__(self):
        self.roi = tuple(int(v) for v in self.roi)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != (self.roi[3], self.roi[2]):
            raise ValueError("mask shape %s does not match roi %s" % (self.mask.shape, self.roi))

    @property
    def area(self):
        return int(np.count_nonzero(self.mask))


class Segmenter:
    """Base class: ``segment(image, score_map, prompts) -> List[Segment]``.

    ``image`` is the frame as HxWx3 uint8 BGR; ``score_map`` is the anomaly score resized to the
    same HxW (float32, higher = more anomalous, NaN allowed); ``prompts`` are
    :class:`s2m_ros.segmentation.prompts.Prompt` in image pixels. One Segment per prompt that produced a
    non-empty mask (``prompt_index`` says which); prompts with an empty result are omitted.
    """

    name = "segmenter"

    def segment(self, image: np.ndarray, score_map: np.ndarray, prompts: Sequence) -> List[Segment]:
        raise NotImplementedError
