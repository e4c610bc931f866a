"""Training losses: pixel, perceptual, texture, distillation, KLT quality, stereo consistency.

Every loss is a typed function plus a thin ``nn.Module`` whose ``forward`` returns a scalar
tensor (``DistillationLoss`` returns a dict of named, already weighted parts; the total is
their sum). See docs/losses.md.
"""

from .consistency import (
    StereoConsistencyLoss,
    attention_consistency_loss,
    disparity_consistency_loss,
    sample_along_rows,
    warp_by_attention,
)
from .distill import (
    DistillationLoss,
    FeatureAdapter,
    FrozenTeachers,
    TeacherOutput,
    feature_distillation_loss,
    forward_with_features,
    gather_views,
    output_distillation_loss,
    per_sample_error,
    record_features,
    select_teachers,
)
from .perceptual import DEFAULT_PERCEPTUAL_LAYERS, PerceptualLoss, perceptual_loss
from .pixel import CharbonnierLoss, L1Loss, MSELoss, charbonnier_loss, l1_loss, mse_loss
from .quality import (
    DEFAULT_KLT_WEIGHTS,
    KLTQualityLoss,
    KLTStats,
    fit_klt,
    klt_coefficients,
    klt_quality_loss,
    klt_quality_score,
    klt_statistics,
    load_klt,
)
from .texture import DEFAULT_TEXTURE_LAYERS, TextureLoss, gram_matrix, texture_loss

__all__ = [
    "DEFAULT_KLT_WEIGHTS", "DEFAULT_PERCEPTUAL_LAYERS", "DEFAULT_TEXTURE_LAYERS",
    "CharbonnierLoss", "DistillationLoss", "FeatureAdapter", "FrozenTeachers", "KLTQualityLoss",
    "KLTStats", "L1Loss", "MSELoss", "PerceptualLoss", "StereoConsistencyLoss", "TeacherOutput",
    "TextureLoss", "attention_consistency_loss", "charbonnier_loss", "disparity_consistency_loss",
    "feature_distillation_loss", "fit_klt", "forward_with_features", "gather_views", "gram_matrix",
    "klt_coefficients", "klt_quality_loss", "klt_quality_score", "klt_statistics", "l1_loss",
    "load_klt", "mse_loss", "output_distillation_loss", "per_sample_error", "perceptual_loss",
    "record_features", "sample_along_rows", "select_teachers", "texture_loss", "warp_by_attention",
]
