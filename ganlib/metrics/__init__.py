"""Metrics: mode coverage on mixtures, Fréchet distance / KID / precision-recall on
features, and an offline digits network for features and stacked-digit mode counting.

``inception_fid`` needs torchmetrics and downloadable Inception weights; it imports them
only when called and says what to do when they are missing (offline: ``digits_fid``).
"""

from .digits import (
    DigitsClassifier,
    classifier_info,
    classify_digits,
    digits_features,
    digits_fid,
    digits_i_variance,
    digits_inception_score,
    digits_kid,
    digits_split,
    i_variance,
    load_digits_classifier,
    stacked_digit_modes,
)
from .frechet import fid_from_features, frechet_distance, gaussian_stats, kid, precision_recall, trace_sqrt_product
from .inception import inception_fid
from .mixture import ModeStats, kl_to_uniform, mean_log_likelihood, mode_statistics

__all__ = [
    "ModeStats", "mode_statistics", "kl_to_uniform", "mean_log_likelihood",
    "gaussian_stats", "trace_sqrt_product", "frechet_distance", "fid_from_features", "kid",
    "precision_recall",
    "DigitsClassifier", "load_digits_classifier", "classifier_info", "digits_split",
    "digits_features", "classify_digits", "digits_fid", "digits_kid", "digits_inception_score",
    "i_variance", "digits_i_variance",
    "stacked_digit_modes",
    "inception_fid",
]
