"""A local, Python PredictionService for development and tests (NOT for production).

    python serve/dev_server.py --model_base_path=models/tfvideogen --port=8500
    python serve/dev_server.py --model_config_file=models/tfvideogen/models.config \
        --batching_parameters_file=models/tfvideogen/batching.config --rest_api_port=8501

Speaks TF Serving's gRPC API (Predict, GetModelMetadata, GetModelStatus) and,
with --rest_api_port, its REST API, because `tensorflow_model_server` cannot
be installed here. Serves the highest version, picks up new ones without a
restart, replays warmup files, binds 127.0.0.1 unless --host says otherwise.
SIGTERM/SIGINT stop it gracefully (in-flight requests finish). Production:
serve/README.md (TF Serving).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_base_path", "", "Directory holding the integer version directories.")
flags.DEFINE_string("model_name", "tfvideogen", "Model name clients ask for.")
flags.DEFINE_string("model_config_file", "", "A models.config (one model): sets name and path.")
flags.DEFINE_string("batching_parameters_file", "", "A batching.config: sets max_batch_size.")
flags.DEFINE_string("host", "127.0.0.1", "Interface to bind (0.0.0.0 exposes it to the network).")
flags.DEFINE_integer("port", 8500, "gRPC port (0 = any free port).", lower_bound=0)
flags.DEFINE_integer("rest_api_port", 0, "REST port (0 = no REST, as in TF Serving).",
                     lower_bound=0)
flags.DEFINE_integer("max_batch_size", 8, "Largest accepted batch.", lower_bound=1)
flags.DEFINE_integer("max_concurrent_requests", 2, "Model runs at once.", lower_bound=1)
flags.DEFINE_integer("max_queued_requests", 16, "Waiting requests beyond that (then "
                     "RESOURCE_EXHAUSTED).", lower_bound=0)
flags.DEFINE_float("poll_seconds", 1.0, "Version poll interval (TF Serving: "
                   "--file_system_poll_wait_seconds).", lower_bound=0.05, upper_bound=60.0)
flags.DEFINE_bool("warmup", True, "Replay assets.extra/tf_serving_warmup_requests on load.")
flags.DEFINE_float("grace_seconds", 5.0, "On SIGTERM, how long in-flight requests may finish.",
                   lower_bound=0.0)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfvideogen.serving import dev_server

    cfg = dev_server.DevServerConfig(
        model_base_path=FLAGS.model_base_path, model_name=FLAGS.model_name, host=FLAGS.host,
        port=FLAGS.port, rest_api_port=FLAGS.rest_api_port or None,
        max_batch_size=FLAGS.max_batch_size,
        max_concurrent_requests=FLAGS.max_concurrent_requests,
        max_queued_requests=FLAGS.max_queued_requests, poll_seconds=FLAGS.poll_seconds,
        warmup=FLAGS.warmup, grace_seconds=FLAGS.grace_seconds)
    try:
        if FLAGS.model_config_file:
            cfg.apply_model_config(FLAGS.model_config_file)
        if FLAGS.batching_parameters_file:
            cfg.apply_batching_config(FLAGS.batching_parameters_file)
        cfg.validate()
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None

    def ready(server):
        version = server.manager.current.version if server.manager.current else "none yet"
        rest = f", REST on {server.cfg.host}:{server.rest_port}" if server.rest_port else ""
        print(f"serving {cfg.model_name!r} version {version} on {server.target}{rest}",
              flush=True)

    try:
        dev_server.serve_forever(cfg, ready=ready)
    except OSError as e:
        raise app.UsageError(str(e)) from None
    print("stopped", flush=True)


if __name__ == "__main__":
    app.run(main)
