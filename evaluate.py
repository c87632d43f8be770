"""Evaluates a text-to-video GAN: `python evaluate.py --model_dir=RUN` (or `--saved_model=DIR`).

Writes `metrics.json`, `report.md`, `samples.gif` and `curves.png` into
--out_dir (default `<model_dir>/eval/step_N`): caption accuracy per attribute
on `train` and `heldout` captions, the Fréchet classifier distance, per-caption
diversity, and FVD with --fvd (needs the I3D module: TF-Hub cache or a path).
See `tfvideogen.metrics.evaluate`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tfvideogen.metrics import classifier as classifier_lib  # noqa: E402
from tfvideogen.metrics import evaluate as evaluate_lib  # noqa: E402
from tfvideogen.metrics import fvd as fvd_lib  # noqa: E402

FLAGS = flags.FLAGS
_defaults = evaluate_lib.EvalConfig()
_clf = classifier_lib.ClassifierConfig()
flags.DEFINE_string("model_dir", "", "A training run directory (its latest checkpoint).")
flags.DEFINE_string("checkpoint", "", "With --model_dir: a checkpoint path instead of the latest.")
flags.DEFINE_bool("ema", True, "With --model_dir: judge the EMA generator (--noema: the raw "
                  "one; reports go to eval/step_N_raw).")
flags.DEFINE_list("truncation", ["1"], "With --model_dir: scale the latents by this psi in "
                  "(0, 1] (the truncation trick: fidelity for diversity; 1 = none). Several "
                  "(e.g. 1,0.7,0.5): one evaluation each and a side-by-side curve in "
                  "<out_dir or model_dir/eval/step_N_truncation>/truncation.md.")
flags.DEFINE_string("saved_model", "", "An exported SavedModel (a version dir or the base "
                    "path, whose highest version is used).")
flags.DEFINE_string("out_dir", "", "Report directory (default <model_dir>/eval/step_N; "
                    "required with --saved_model).")
flags.DEFINE_string("dataset", "", "Built-in dataset (required with --saved_model; default "
                    "the run's).")
flags.DEFINE_integer("num_objects", 1, "moving_shapes with --saved_model: objects per clip.")
flags.DEFINE_string("mnist_path", "", "bouncing_digits with --saved_model: MNIST .npz.")
flags.DEFINE_list("splits", list(_defaults.splits), "Caption splits to evaluate.")
flags.DEFINE_integer("num_samples", _defaults.num_samples,
                     "Generated videos (and real clips) per split for accuracy and FCD.")
flags.DEFINE_integer("batch_size", _defaults.batch_size, "Generation batch size.")
flags.DEFINE_integer("seed", _defaults.seed, "Seed of the real reference clips.")
flags.DEFINE_integer("diversity_captions", _defaults.diversity_captions,
                     "Captions per split scored for diversity (0 disables).")
flags.DEFINE_integer("diversity_seeds", _defaults.diversity_seeds,
                     "Videos per caption for diversity.")
flags.DEFINE_float("collapse_threshold", _defaults.collapse_threshold,
                   "Diversity ratio below which a caption counts as collapsed.")
flags.DEFINE_bool("fvd", False, "Also compute FVD (needs the I3D module; slow on CPU).")
flags.DEFINE_string("fvd_module", fvd_lib.I3D_HANDLE,
                    "I3D: TF-Hub URL (looked up in TFHUB_CACHE_DIR) or a local module dir.")
flags.DEFINE_bool("fvd_download", False, "Allow downloading the I3D module if not cached.")
flags.DEFINE_integer("fvd_samples", _defaults.fvd_samples, "Videos per set for FVD.")
flags.DEFINE_list("fvd_splits", list(_defaults.fvd_splits), "Splits that get an FVD.")
flags.DEFINE_string("classifier_dir", "", "Cache of trained judge classifiers (default "
                    "$TFVIDEOGEN_CACHE_DIR/classifiers or ~/.cache/tfvideogen/classifiers).")
flags.DEFINE_integer("classifier_steps", _clf.steps, "Training steps of the judge classifier.")
flags.DEFINE_integer("grid_captions", _defaults.grid_captions, "Captions in the sample grid.")
flags.DEFINE_bool("write_summaries", True, "With --model_dir: log headline metrics to "
                  "<model_dir>/logs/eval.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        truncations = [float(p) for p in FLAGS.truncation]
    except ValueError:
        raise app.UsageError(f"--truncation takes numbers in (0, 1], got "
                             f"{','.join(FLAGS.truncation)!r}") from None
    if not truncations:
        raise app.UsageError("--truncation is empty; give a psi in (0, 1] (1 = none)")
    cfg = evaluate_lib.EvalConfig(
        model_dir=FLAGS.model_dir, saved_model=FLAGS.saved_model, checkpoint=FLAGS.checkpoint,
        use_ema=FLAGS.ema, truncation=truncations[0],
        out_dir=FLAGS.out_dir, dataset=FLAGS.dataset, num_objects=FLAGS.num_objects,
        mnist_path=FLAGS.mnist_path, splits=tuple(FLAGS.splits), num_samples=FLAGS.num_samples,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        diversity_captions=FLAGS.diversity_captions, diversity_seeds=FLAGS.diversity_seeds,
        collapse_threshold=FLAGS.collapse_threshold, fvd=FLAGS.fvd, fvd_module=FLAGS.fvd_module,
        fvd_download=FLAGS.fvd_download, fvd_samples=FLAGS.fvd_samples,
        fvd_splits=tuple(FLAGS.fvd_splits), classifier_dir=FLAGS.classifier_dir,
        classifier=classifier_lib.ClassifierConfig(steps=FLAGS.classifier_steps),
        grid_captions=FLAGS.grid_captions, write_summaries=FLAGS.write_summaries)
    try:
        evaluate_lib.check_truncations(cfg, truncations)
        if cfg.fvd:  # fail before minutes of work when the module is missing
            fvd_lib.resolve_module(cfg.fvd_module, cfg.fvd_download)
    except fvd_lib.ModuleNotAvailableError as e:
        raise app.UsageError(str(e)) from None
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    try:
        if len(truncations) > 1:
            curve = evaluate_lib.evaluate_truncations(cfg, truncations, log=logging.info)
            print(evaluate_lib.truncation_report(curve), end="")
            print(f"report: {os.path.join(curve['out_dir'], evaluate_lib.TRUNCATION_REPORT)}")
            return
        metrics = evaluate_lib.evaluate(cfg, log=logging.info)
    except (FileNotFoundError, ValueError) as e:
        logging.error("%s", e)
        raise SystemExit(1) from None
    for tag, value in evaluate_lib.headline(metrics).items():
        print(f"{tag}: {value:.4f}")
    print(f"report: {os.path.join(metrics['out_dir'], evaluate_lib.REPORT_FILE)}")


if __name__ == "__main__":
    app.run(main)
