"""The Fréchet distance between Gaussians fitted to two sets of features.

One float64 implementation shared by every Fréchet metric of the package
(FVD on I3D logits, the Fréchet classifier distance on our own classifier's
features). As in TF-GAN's `classifier_metrics.py`, the math lives apart from
the feature extractors:

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

with unbiased covariances (divide by n - 1, like TF-GAN and `np.cov`).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import scipy.linalg

# Largest |imag| of sqrtm(S1 S2), relative to its largest |real| entry, that is
# still numerical noise. Real PSD products have a real root; a larger residue
# means the covariances are badly conditioned (e.g. far fewer samples than dims).
IMAG_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Mean [D] and covariance [D, D] (float64) of `count` feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


def check_features(features: np.ndarray, name: str = "features") -> np.ndarray:
    """Validates a finite [N, D] feature matrix (N >= 2) and returns it as float64."""
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [num_samples, dim] array, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name}: a covariance needs at least 2 samples, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name}: feature dimension is 0")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or inf values")
    return x


def statistics(features: np.ndarray, name: str = "features") -> Statistics:
    """Mean and unbiased covariance of `features` [N, D], in float64."""
    x = check_features(features, name)
    mean = x.mean(axis=0)
    centered = x - mean
    cov = centered.T @ centered / (x.shape[0] - 1)
    return Statistics(mean=mean, cov=cov, count=int(x.shape[0]))


def _sqrtm_trace(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Tr(sqrtm(a @ b)) (real part) and the relative imaginary residue."""
    with warnings.catch_warnings():
        # "Matrix is singular": expected for rank-deficient covariances (e.g.
        # identical samples); the residue check below decides whether it matters.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        root = scipy.linalg.sqrtm(a @ b)
    root = np.asarray(root)
    if not np.all(np.isfinite(root)):
        return float("nan"), float("inf")
    scale = max(1.0, float(np.max(np.abs(root.real))))
    residue = float(np.max(np.abs(root.imag))) / scale if np.iscomplexobj(root) else 0.0
    return float(np.trace(root.real)), residue


def frechet_distance_from_statistics(s1: Statistics, s2: Statistics,
                                     eps: float = 1e-6,
                                     imag_tolerance: float = IMAG_TOLERANCE) -> float:
    """The Fréchet distance between N(mu1, S1) and N(mu2, S2), a float >= 0.

    Uses the real part of `scipy.linalg.sqrtm(S1 @ S2)`. When the root is not
    finite or its imaginary residue exceeds `imag_tolerance` (relative), it is
    recomputed with `eps * I` added to both covariances; if the residue is
    still too large, raises ValueError rather than return a wrong number.
    """
    if s1.dim != s2.dim:
        raise ValueError(f"feature dimensions differ: {s1.dim} vs {s2.dim}")
    mu1, mu2 = np.asarray(s1.mean, np.float64), np.asarray(s2.mean, np.float64)
    c1, c2 = np.asarray(s1.cov, np.float64), np.asarray(s2.cov, np.float64)
    trace_root, residue = _sqrtm_trace(c1, c2)
    if not residue <= imag_tolerance:
        offset = np.eye(s1.dim) * eps
        trace_root, residue = _sqrtm_trace(c1 + offset, c2 + offset)
        if not residue <= imag_tolerance:
            raise ValueError(
                f"sqrtm(S1 S2) has an imaginary residue of {residue:.3g} (relative) even "
                f"with eps={eps}: the covariances are ill-conditioned. Use more samples "
                f"(got {s1.count} and {s2.count} for {s1.dim}-d features).")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * trace_root)
    # Tiny negatives are rounding (identical distributions): clamp to the true minimum.
    return max(value, 0.0)


def frechet_distance(features1: np.ndarray, features2: np.ndarray, **kwargs) -> float:
    """Fréchet distance between two feature sets [N1, D] and [N2, D] (float64 math)."""
    return frechet_distance_from_statistics(statistics(features1, "features1"),
                                            statistics(features2, "features2"), **kwargs)
