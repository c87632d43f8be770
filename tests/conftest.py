"""Shared test setup: quiet TF, tiny configs, one tiny trained run per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tfvideogen import config as config_lib  # noqa: E402


def tiny_config(*overrides: str) -> config_lib.ExperimentConfig:
    """The `tiny` experiment with dotted overrides, e.g. `tiny_config("train.steps=2")`."""
    return config_lib.apply_overrides(config_lib.get_experiment("tiny"), overrides).validate()


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> str:
    """A tiny run trained once per session (2 steps): for export/eval/serving tests."""
    from tfvideogen import training

    model_dir = str(tmp_path_factory.mktemp("tiny_run"))
    cfg = config_lib.apply_overrides(config_lib.get_experiment("tiny"), ["train.steps=2"])
    training.train(cfg, model_dir)
    return model_dir
