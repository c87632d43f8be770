"""Generates videos from a served tfvideogen model (TF Serving or serve/dev_server.py).

    python serve/client.py --target 127.0.0.1:8500 --model tfvideogen \
        --text "a red circle is moving left" --seed 0 --out out.mp4
    python serve/client.py --rest_url http://127.0.0.1:8501 --text "..." --out out.gif
    python serve/client.py --target 127.0.0.1:8500 --status

gRPC by default (receive limit sized to the request); --rest_url uses TF
Serving's REST API. The same (text, seed) always gives the same video.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("target", "127.0.0.1:8500", "gRPC host:port of the PredictionService.")
flags.DEFINE_string("rest_url", "", "Use REST instead, e.g. http://127.0.0.1:8501.")
flags.DEFINE_string("model", "tfvideogen", "Model name.")
flags.DEFINE_integer("version", None, "Pin a model version (default: latest served).")
flags.DEFINE_multi_string("text", [], "Caption (repeat for a batch).")
flags.DEFINE_integer("seed", 0, "Seed of the first caption (caption i uses seed + i).")
flags.DEFINE_string("out", "out.mp4", "Output .mp4/.gif (a batch writes <stem>_<i><ext>).")
flags.DEFINE_integer("fps", 8, "Frames per second of the written file.", lower_bound=1)
flags.DEFINE_float("timeout", 30.0, "Seconds per call.", lower_bound=0.1)
flags.DEFINE_bool("status", False, "Print the model's version status and signatures, then exit.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfvideogen.serving import client as client_lib
    from tfvideogen.serving.errors import ServingError

    job = client_lib.GenerateJob(texts=list(FLAGS.text), seed=FLAGS.seed, out=FLAGS.out,
                                 target=FLAGS.target, rest_url=FLAGS.rest_url, model=FLAGS.model,
                                 version=FLAGS.version, fps=FLAGS.fps, timeout=FLAGS.timeout)
    try:
        if FLAGS.status:
            print_status(client_lib.make_client(job))
            return
        job.validate()
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    except ServingError as e:
        logging.error("%s", e)
        sys.exit(1)
    try:
        paths, seconds = client_lib.generate_to_files(job)
    except ServingError as e:
        logging.error("%s", e)
        sys.exit(1)
    for i, path in enumerate(paths):
        print(f"{path}: {job.texts[i]!r} seed {job.seed + i}")
    print(f"{len(paths)} video(s) in {seconds * 1000:.1f} ms")


def print_status(client) -> None:
    from tfvideogen.serving.client import GrpcClient

    if isinstance(client, GrpcClient):
        for s in client.status():
            print(f"version {s['version']}: {s['state']} {s['error_message']}".rstrip())
        for name, sig in sorted(client.signature_defs().items()):
            if name.startswith("__"):
                continue
            ins = ", ".join(f"{k}" for k in sorted(sig.inputs))
            outs = ", ".join(f"{k}" for k in sorted(sig.outputs))
            print(f"  {name}({ins}) -> {outs}")
        client.close()
    else:
        print(client.status())


if __name__ == "__main__":
    app.run(main)
