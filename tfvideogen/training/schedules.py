"""Learning-rate schedules (Keras-serializable)."""

from __future__ import annotations

import keras
from keras import ops

from tfvideogen.models.layers import PACKAGE


@keras.saving.register_keras_serializable(PACKAGE)
class TailDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant `learning_rate` until `total_steps - decay_steps`, then linear to 0
    at `total_steps` (the pix2pix/CycleGAN schedule: GAN weights settle instead of
    ending wherever the last oscillation left them).

    Driven by the optimizer's own step counter (checkpointed, so a resumed run
    continues the schedule). Under mixed_float16, steps skipped for overflow do
    not advance it.
    """

    def __init__(self, learning_rate: float, total_steps: int, decay_steps: int):
        if not 0 < decay_steps <= total_steps:
            raise ValueError(f"decay_steps must be in [1, total_steps={total_steps}], "
                             f"got {decay_steps}")
        self.learning_rate, self.total_steps = float(learning_rate), int(total_steps)
        self.decay_steps = int(decay_steps)

    def __call__(self, step):
        left = ops.cast(self.total_steps, "float32") - ops.cast(step, "float32")
        return self.learning_rate * ops.clip(left / self.decay_steps, 0.0, 1.0)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "decay_steps": self.decay_steps}
