"""Training: losses, the tf.function GAN step and the resumable loop."""

from tfvideogen.training.trainer import (
                                         IncompatibleRunError,
                                         NonFiniteLossError,
                                         SetupError,
                                         TrainResult,
                                         load_run_config,
                                         load_task,
                                         timestamped_dir,
                                         train,
)

__all__ = ["IncompatibleRunError", "NonFiniteLossError", "SetupError", "TrainResult",
           "load_run_config", "load_task", "timestamped_dir", "train"]
