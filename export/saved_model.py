"""Exports a training run for TF Serving: `<export_dir>/<version>/` + server configs.

    python export/saved_model.py --model_dir=runs/exp1 --export_dir=models/tfvideogen

Writes the next integer version (or --version) atomically from the run's
latest (or --checkpoint) weights, EMA generator when the run has one, always
float32. See `tfvideogen.export` for the signatures and serve/README.md for
serving it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run directory (holds config.json, checkpoints/).")
flags.DEFINE_string("export_dir", "models/tfvideogen", "Model base path: versions go below it.")
flags.DEFINE_string("checkpoint", "", "Checkpoint prefix (e.g. RUN/checkpoints/ckpt-500); "
                    "empty = latest.")
flags.DEFINE_integer("version", None, "Version number; default: the next integer. Never "
                     "overwrites.", lower_bound=0)
flags.DEFINE_string("model_name", "tfvideogen", "Model name in models.config (the gRPC/REST name).")
flags.DEFINE_string("serving_base_path", "", "base_path written to models.config as the server "
                    "sees it (e.g. /models/tfvideogen in a container); default: the absolute "
                    "--export_dir.")
flags.DEFINE_integer("max_batch_size", 8, "batching.config max_batch_size (also warms every "
                     "allowed batch size).", lower_bound=1)
flags.DEFINE_integer("batch_timeout_micros", 5000, "batching.config batch_timeout_micros.",
                     lower_bound=0)
flags.DEFINE_integer("num_batch_threads", 2, "batching.config num_batch_threads.", lower_bound=1)
flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
flags.DEFINE_float("truncation", 1.0, "Scale of the latents serving_default derives from "
                   "seeds, in (0, 1]: below 1 trades diversity for fidelity (the truncation "
                   "trick; README#Quality). Recorded in the export's tfvideogen.json.")
flags.DEFINE_bool("verify", True, "Reload the export and require uint8 equality with the "
                  "in-memory model before publishing it.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfvideogen import export

    cfg = export.ExportRunConfig(
        model_dir=FLAGS.model_dir, export_dir=FLAGS.export_dir, checkpoint=FLAGS.checkpoint,
        version=FLAGS.version, warmup=FLAGS.warmup, verify=FLAGS.verify,
        truncation=FLAGS.truncation,
        serving=export.ServingConfig(model_name=FLAGS.model_name,
                                     base_path=FLAGS.serving_base_path,
                                     max_batch_size=FLAGS.max_batch_size,
                                     batch_timeout_micros=FLAGS.batch_timeout_micros,
                                     num_batch_threads=FLAGS.num_batch_threads))
    try:
        cfg.validate()
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    try:
        path = export.export_from_config(cfg)
    except (OSError, ValueError, RuntimeError) as e:
        # Missing run/checkpoint, VersionExistsError (an OSError), IncompatibleRunError (a
        # ValueError), IncompleteCheckpointError or a failed verification (RuntimeErrors).
        logging.error("%s", e)
        sys.exit(1)
    print(f"exported {path}\nserve it: python serve/dev_server.py --model_base_path="
          f"{cfg.export_dir} --model_name={cfg.serving.model_name}  (or TF Serving: "
          f"serve/README.md)")


if __name__ == "__main__":
    app.run(main)
