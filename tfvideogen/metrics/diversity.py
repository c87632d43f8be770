"""Per-caption diversity: does the generator give different videos for different seeds?

For each caption, the mean pairwise distance between K videos generated with
K seeds, divided by the same quantity on real clips of that caption:

    ratio(c) = mean_{i<j} d(G(c, s_i), G(c, s_j)) / mean_{i<j} d(x_i, x_j),  x ~ real | c

with d the per-pixel RMS distance of the uint8 videos scaled to [0, 1]. A
ratio near 1 means real-like variety (position, size, speed); near 0 means
every seed gives (nearly) the same clip: mode collapse for that caption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tfvideogen import data as data_lib

# A caption whose ratio is below this is flagged as collapsed.
COLLAPSE_THRESHOLD = 0.2


def _check(videos: np.ndarray, name: str) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{name} must be [K, T, H, W, 3], got shape {videos.shape}")
    if videos.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 0-255, got {videos.dtype}")
    if len(videos) < 2:
        raise ValueError(f"{name}: pairwise distances need at least 2 videos, got {len(videos)}")
    return videos


def mean_pairwise_distance(videos: np.ndarray) -> float:
    """Mean over pairs i < j of the RMS pixel distance (videos uint8 [K,T,H,W,3]); in [0, 1]."""
    x = _check(videos, "videos").reshape(len(videos), -1).astype(np.float64) / 255.0
    # Direct differences (K is small): identical videos give exactly 0.
    dists = [np.sqrt(np.mean((x[i] - x[j]) ** 2)) for i in range(len(x))
             for j in range(i + 1, len(x))]
    return float(np.mean(dists))


def diversity_scores(generated: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray],
                     threshold: float = COLLAPSE_THRESHOLD) -> dict:
    """Per-caption and summary diversity.

    `generated`: caption -> uint8 [K, T, H, W, 3] (K >= 2 seeds).
    `real`: caption -> uint8 [M, T, H, W, 3]; a caption with fewer than 2 real
    clips is normalised by the mean real diversity of the others (`pooled`).
    Returns {"per_caption": {caption: {generated, real, ratio, collapsed,
    pooled}}, "mean_ratio", "min_ratio", "collapsed_fraction", "collapsed",
    "mode_collapse" (True when at least half the captions collapsed),
    "threshold"}.
    """
    if not generated:
        raise ValueError("no generated videos to score")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    real_div = {c: mean_pairwise_distance(v) for c, v in real.items() if len(v) >= 2}
    if not real_div:
        raise ValueError("diversity needs at least one caption with 2 or more real clips")
    pooled = float(np.mean(list(real_div.values())))
    per_caption = {}
    for caption, videos in generated.items():
        gen = mean_pairwise_distance(_check(videos, f"generated[{caption!r}]"))
        ref = real_div.get(caption, pooled)
        ratio = gen / ref if ref > 0 else float("inf")
        per_caption[caption] = {"generated": gen, "real": ref, "ratio": ratio,
                                "collapsed": bool(ratio < threshold),
                                "pooled": caption not in real_div}
    ratios = np.array([v["ratio"] for v in per_caption.values()])
    collapsed = sorted(c for c, v in per_caption.items() if v["collapsed"])
    fraction = len(collapsed) / len(per_caption)
    return {"per_caption": per_caption, "mean_ratio": float(np.mean(ratios)),
            "min_ratio": float(np.min(ratios)), "collapsed_fraction": fraction,
            "collapsed": collapsed, "mode_collapse": bool(fraction >= 0.5),
            "threshold": threshold}


def real_clips_by_caption(name: str, split: str, captions: Sequence[str], per_caption: int,
                          frames: int, height: int, width: int, seed: int,
                          max_scan: int = 4096, **options) -> dict[str, np.ndarray]:
    """Up to `per_caption` real uint8 clips for each caption, scanning the split's stream.

    Scans at most `max_scan` clips (the stream draws captions uniformly), so a
    caption may come back with fewer clips; `diversity_scores` handles that.
    """
    if per_caption < 2:
        raise ValueError(f"per_caption must be >= 2, got {per_caption}")
    import tensorflow as tf

    wanted = set(captions)
    found: dict[str, list[np.ndarray]] = {c: [] for c in wanted}
    ds = data_lib.load(name, split=split, frames=frames, height=height, width=width, seed=seed,
                       num_examples=max_scan, **options)
    for batch in ds.batch(64):
        videos = tf.cast(tf.round(tf.clip_by_value((batch["video"] + 1.0) * 127.5, 0.0, 255.0)),
                         tf.uint8).numpy()
        for video, caption in zip(videos, batch["caption"].numpy()):
            caption = caption.decode()
            if caption in wanted and len(found[caption]) < per_caption:
                found[caption].append(video)
        if all(len(v) >= per_caption for v in found.values()):
            break
    return {c: np.stack(v) for c, v in found.items() if v}
