"""Evaluation metrics and the evaluation tool (`python evaluate.py`).

- `frechet`: the one float64 Fréchet distance (and mean/covariance statistics)
  shared by FVD and the Fréchet classifier distance;
- `fvd`: FVD as in google-research `frechet_video_distance` (I3D from TF-Hub);
- `classifier`: the caption-attribute video classifier (caption accuracy and
  the features of the Fréchet classifier distance);
- `diversity`: per-caption diversity and mode-collapse flags;
- `objects`: per-frame object area and count against real clips (blobs, ghosts, fade-in);
- `word_head`: a run's D word head read as a judge (what D can teach G, and whether G fools it);
- `evaluate`: runs them on a run directory or a SavedModel and writes reports.
"""

from tfvideogen.metrics.frechet import Statistics, frechet_distance, statistics

__all__ = ["Statistics", "frechet_distance", "statistics"]
