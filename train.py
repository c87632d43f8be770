"""Trains a text-to-video GAN: `python train.py` (defaults: moving_shapes, 16x32x32).

Flags map onto `tfvideogen.config.ExperimentConfig`; the resolved config is
written to `<model_dir>/config.json`. Rerun with the same --model_dir to resume.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tfvideogen import config as config_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("experiment", "default", sorted(config_lib.EXPERIMENTS), "Named experiment.")
flags.DEFINE_string("config_file", "", "JSON file with config fields, applied on top.")
flags.DEFINE_multi_string("override", [], "Dotted overrides, e.g. train.steps=100.")
flags.DEFINE_string("model_dir", "", "Run directory (default runs/<timestamp>); rerun to resume.")
flags.DEFINE_string("dataset", None, "Dataset name (see tfvideogen.data.available()).")
flags.DEFINE_integer("steps", None, "Training steps.")
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_enum("mixed_precision", None, list(config_lib.PRECISION_CHOICES),
                  "Compute precision (auto: mixed_bfloat16 on CPUs with bfloat16 instructions).")
flags.DEFINE_enum("strategy", None, list(config_lib.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_integer("seed", None, "Random seed (models, noise).")
flags.DEFINE_string("text_encoder", None, "'builtin' or a TF-Hub handle / URL / local path.")
flags.DEFINE_string("text_preprocessor", None,
                    "TF-Hub preprocessor handle for BERT-style --text_encoder pairs.")
flags.DEFINE_bool("text_encoder_trainable", None,
                  "Fine-tune the TF-Hub text encoder (default: frozen, embeddings cached).")
flags.DEFINE_bool("jit_compile", None, "XLA-compile the train step (slower for 3D convs on CPU).")
flags.DEFINE_integer("intra_op_threads", None, "Threads per op (0 = TF default).")
flags.DEFINE_integer("inter_op_threads", None, "Ops run in parallel (0 = TF default).")
flags.DEFINE_bool("deterministic", None, "Bitwise-reproducible ops (enable_op_determinism).")

# Dedicated flags -> config fields (they are overrides, applied last).
_FLAG_FIELDS = {"dataset": "data.name", "steps": "train.steps", "batch_size": "train.batch_size",
                "mixed_precision": "train.mixed_precision", "strategy": "train.strategy",
                "seed": "train.seed", "text_encoder": "model.text_encoder.kind",
                "text_preprocessor": "model.text_encoder.preprocessor",
                "text_encoder_trainable": "model.text_encoder.trainable",
                "jit_compile": "train.jit_compile", "intra_op_threads": "train.intra_op_threads",
                "inter_op_threads": "train.inter_op_threads",
                "deterministic": "train.deterministic"}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfvideogen import models, training

    overrides = list(FLAGS.override) + [
        f"{field}={FLAGS[name].value}" for name, field in _FLAG_FIELDS.items()
        if FLAGS[name].value is not None]
    try:
        cfg = config_lib.resolve(FLAGS.experiment, FLAGS.config_file, overrides)
        # Thread pools must be sized before any TF op runs.
        training.trainer.configure_runtime(cfg.train)
        training.trainer.dataset_for(cfg)  # unknown dataset -> error listing the choices
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None
    model_dir = FLAGS.model_dir or training.timestamped_dir()
    logging.info("run directory: %s", model_dir)
    try:
        result = training.train(cfg, model_dir)
    except training.SetupError as e:  # found once the strategy knows its devices
        raise app.UsageError(str(e)) from None
    except (training.IncompatibleRunError, training.NonFiniteLossError,
            models.HubLoadError) as e:
        logging.error("%s", e)
        sys.exit(1)
    if result.preempted:
        # A requested stop (SIGTERM/SIGINT) is a clean exit: the checkpoint is written.
        print(f"preempted: checkpoint at step {result.step} in {model_dir}; rerun to resume")
        return
    print(f"done: step {result.step} in {model_dir} ({result.steps_per_second:.2f} steps/s); "
          f"samples in {os.path.join(model_dir, 'samples')}")


if __name__ == "__main__":
    app.run(main)
