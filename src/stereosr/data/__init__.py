"""Stereo data: data set layouts, SR samples, training patches and synthetic pairs.

Modules (imported explicitly; this package imports nothing heavy on its own):

- :mod:`.pairs`: ``find_pairs`` over Flickr1024, Middlebury, KITTI, official patch/test layouts
- :mod:`.datasets`: ``StereoSRDataset``, LR/HR samples with LR from disk or made from HR
- :mod:`.patches`: the official 30 x 90 LR patch folders
- :mod:`.synthetic`: stereo pairs rendered from one photograph with known disparity
- :mod:`.training_set`: folders of synthetic pairs from many photographs
- :mod:`.augment`, :mod:`.sampler`: training crops, augmentations and sampling
"""

from __future__ import annotations

from .pairs import PairFiles, find_pairs

__all__ = ["PairFiles", "find_pairs"]
