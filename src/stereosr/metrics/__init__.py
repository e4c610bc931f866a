"""Image-quality metrics and the evaluation protocols of stereo super-resolution.

Scores follow the field's conventions by default: 8-bit RGB on the 0..255 scale, no border
crop, SSIM with a 7 x 7 uniform window, a pair scored as the mean of its two views.
"""

from __future__ import annotations

from .consistency import (
                          ConsistencyResult,
                          disparity_mae,
                          ntire_perceptual_score,
                          stereo_consistency,
                          valid_disparity_mask,
                          warp_error,
                          warp_right_to_left,
)
from .lpips import (
                          LPIPS,
                          LPIPS_HEADS,
                          load_lpips,
                          load_lpips_heads,
                          lpips_distance,
                          lpips_from_arrays,
                          lpips_heads_path,
)
from .protocol import (
                          LEFT,
                          METRIC_NAMES,
                          PROTOCOL_NAMES,
                          STEREO,
                          Protocol,
                          basicsr_protocol,
                          get_protocol,
                          mean_scores,
                          parse_metrics,
                          score_pair,
)
from .psnr import psnr
from .ssim import ssim

__all__ = [
                          "LEFT",
                          "LPIPS",
                          "LPIPS_HEADS",
                          "METRIC_NAMES",
                          "PROTOCOL_NAMES",
                          "STEREO",
                          "ConsistencyResult",
                          "Protocol",
                          "basicsr_protocol",
                          "disparity_mae",
                          "get_protocol",
                          "load_lpips",
                          "load_lpips_heads",
                          "lpips_distance",
                          "lpips_from_arrays",
                          "lpips_heads_path",
                          "mean_scores",
                          "ntire_perceptual_score",
                          "parse_metrics",
                          "psnr",
                          "score_pair",
                          "ssim",
                          "stereo_consistency",
                          "valid_disparity_mask",
                          "warp_error",
                          "warp_right_to_left",
]
