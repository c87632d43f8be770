"""Converts an exported SavedModel to TFLite variants with a parity and latency report.

    python export/tflite.py --saved_model=models/tfvideogen/1 --out_dir=tflite/1
    python export/tflite.py --saved_model=models/tfvideogen/1 --out_dir=tflite/1 \\
        --variants=float32,float16

Converts the `generate_from_embedding` signature (float32, float16 weights,
dynamic-range int8, full-integer int8, int8 with a float32 uint8 tail; builtin
ops only), writes the
caption -> embedding sidecar to `<out_dir>/text/` and the report to
`<out_dir>/report.{json,md}`. See `tfvideogen.export.tflite`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8", "mixed_int8")  # tflite.VARIANTS

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "Export version directory (models/tfvideogen/<v>).")
flags.DEFINE_string("out_dir", None, "Where the .tflite files, text/ sidecar and report go.")
flags.DEFINE_list("variants", list(VARIANTS), f"Subset of {','.join(VARIANTS)}.")
flags.DEFINE_string("dataset", "", "Dataset whose captions feed the representative data, the "
                    "precomputed sidecar and the evaluation; default: the exported run's.")
flags.DEFINE_string("captions_file", "", "One caption a line; replaces the dataset's captions.")
flags.DEFINE_integer("num_eval", 4, "Fixed (caption, seed) pairs for parity.", lower_bound=1)
flags.DEFINE_integer("num_representative", 64, "Representative samples for full_int8.",
                     lower_bound=1)
flags.DEFINE_integer("latency_runs", 30, "Timed interpreter calls per variant (batch 1).",
                     lower_bound=1)
flags.DEFINE_integer("num_threads", 1, "Interpreter threads for the latency runs.",
                     lower_bound=1)
flags.DEFINE_bool("isolate", True, "Convert in a child process (a converter crash then fails "
                  "one variant instead of the whole run).")
flags.DEFINE_integer("seed", 0, "Seed of the representative latents.")
flags.mark_flags_as_required(["saved_model", "out_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:  # before the TensorFlow import below
        raise app.UsageError(f"unknown variant(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(VARIANTS)}")
    from tfvideogen.export import tflite

    cfg = tflite.TFLiteConfig(
        saved_model=FLAGS.saved_model, out_dir=FLAGS.out_dir, variants=tuple(FLAGS.variants),
        dataset=FLAGS.dataset, captions_file=FLAGS.captions_file, num_eval=FLAGS.num_eval,
        num_representative=FLAGS.num_representative, latency_runs=FLAGS.latency_runs,
        num_threads=FLAGS.num_threads, isolate=FLAGS.isolate, seed=FLAGS.seed)
    try:
        cfg.validate()
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    try:
        report = tflite.convert_from_config(cfg)
    except (OSError, ValueError) as e:
        # Not an export dir, missing signatures, unknown dataset, bad captions file.
        logging.error("%s", e)
        sys.exit(1)
    print(tflite.markdown(report))
    print(f"wrote {os.path.join(cfg.out_dir, tflite.REPORT_JSON)} and "
          f"{os.path.join(cfg.out_dir, tflite.REPORT_MD)}")


if __name__ == "__main__":
    app.run(main)
