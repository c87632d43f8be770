"""TFLite conversion of an exported SavedModel, with a parity and latency report.

    report = convert("models/tfvideogen/3", "tflite/3")

The source is the SavedModel's `generate_from_embedding` signature (`z` float32
[B, Z], `text_embedding` float32 [B, D] -> `video` uint8 [B, T, H, W, 3]): it has
no string ops. Each variant is converted with builtin ops only (Flex/select ops
do not run on the stock interpreters):

- `float32`: plain conversion;
- `float16`: float16 weights (dequantized to float32 at load);
- `dynamic_int8`: int8 weights, float activations (dynamic-range quantization);
- `full_int8`: `TFLITE_BUILTINS_INT8` with a representative dataset of random
  latents and real caption embeddings (the SavedModel's `embed_text` on the
  dataset's captions); inputs/outputs keep their float32/uint8 types. The MLIR
  quantizer silently leaves ops without int8 kernels in float32 (in TF 2.17 the
  3D convolutions, ROUND, ...): such a model is kept and measured but reported
  as `partial`, with the float ops and the strict (legacy) quantizer's message;
- `mixed_int8`: `full_int8`'s settings, but the uint8 post-processing after the
  final tanh stays float32 (selective quantization, the documented
  `QuantizationDebugger` denylist). Quantized, `(x + 1) * 127.5` inherits the
  output's scale (~1: three levels for x + 1 in [0, 2]), which is nearly all
  of `full_int8`'s error (tiny run: 16.9 dB -> 35-40 dB PSNR).

A variant that does not convert, uses a non-builtin op or does not run is
reported as `failed` with the converter's (or interpreter's) message, never
dropped. Conversions run in a separate process (`isolate=True`): the converter
can abort the whole process on some graphs (seen with Keras 3 layers saved by
plain `tf.saved_model.save`), which is then reported as that job's failure.

Layout of `out_dir`::

    generator_<variant>.tflite   signature `generate_from_embedding`
    text/                        caption -> embedding sidecar (text_sidecar.py)
    report.json  report.md       per variant: status, size, parity, latency, ops

Parity is on fixed (caption, seed) pairs (z = `latents_from_seeds(seed)`, as
served) against the SavedModel's uint8 video: max and mean |diff| in levels
and PSNR (dB, peak 255; null/inf when identical). Latency is the p50 (and p90)
of `latency_runs` calls at batch 1 on `ai_edge_litert.interpreter.Interpreter`
with `num_threads` threads, inputs fed by name through the signature runner.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from tfvideogen.export import text_sidecar

VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8", "mixed_int8")
SIGNATURE = "generate_from_embedding"
INPUTS = ("text_embedding", "z")
OUTPUT = "video"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
TEXT_DIR = "text"
STATUSES = ("ok", "partial", "failed")
# The strict re-run of `full_int8` with the legacy quantizer (it raises on float ops).
_STRICT = "full_int8_strict"
# Ops that only change the representation at the model's edges.
_BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
# Captions that exercise the tokenizer's edge cases when checking the text encoder.
PROBE_CAPTIONS = ("A RED Square, moving!! up & down?", "a purple elephant is dancing",
                  "it's a circle\tmoving\nleft", "Ünïcode \u212a caption 7",
                  " ".join(["red", "blue"] * 20))


def model_file(variant: str) -> str:
    return f"generator_{variant}.tflite"


@dataclasses.dataclass
class TFLiteConfig:
    """What `export/tflite.py` converts: a SavedModel version -> `out_dir`."""

    saved_model: str = ""
    out_dir: str = ""
    variants: tuple[str, ...] = VARIANTS
    dataset: str = ""  # captions source; default: the exported run's dataset
    captions_file: str = ""  # one caption a line; overrides the dataset's captions
    num_eval: int = 4
    num_representative: int = 64
    latency_runs: int = 30
    num_threads: int = 1
    isolate: bool = True
    seed: int = 0
    timeout_s: float = 3600.0

    def validate(self) -> TFLiteConfig:
        if not self.saved_model:
            raise ValueError("saved_model is required (an export version dir, e.g. "
                             "models/tfvideogen/1)")
        if not self.out_dir:
            raise ValueError("out_dir is required")
        check_variants(self.variants)
        for name in ("num_eval", "num_representative", "latency_runs", "num_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        return self


def check_variants(variants: Sequence[str]) -> tuple[str, ...]:
    variants = tuple(variants)
    if not variants:
        raise ValueError(f"no variants given; valid: {', '.join(VARIANTS)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if len(set(variants)) != len(variants):
        raise ValueError(f"variants repeat: {', '.join(variants)}")
    return variants


# --------------------------------------------------------------------------- #
# Conversion (in a worker process by default).

def converter_settings(mode: str) -> dict[str, Any]:
    """The converter options of a job mode (also recorded in the report)."""
    settings: dict[str, Any] = {"supported_ops": ["TFLITE_BUILTINS"], "optimizations": [],
                                "supported_types": [], "representative_dataset": False}
    if mode == "float16":
        settings.update(optimizations=["DEFAULT"], supported_types=["float16"])
    elif mode == "dynamic_int8":
        settings.update(optimizations=["DEFAULT"])
    elif mode in ("full_int8", _STRICT, "mixed_int8"):
        settings.update(optimizations=["DEFAULT"], supported_ops=["TFLITE_BUILTINS_INT8"],
                        representative_dataset=True,
                        quantizer="legacy" if mode == _STRICT else "mlir")
        if mode == "mixed_int8":
            settings["float_nodes"] = "the uint8 post-processing after the final TANH"
    elif mode != "float32":
        raise ValueError(f"unknown conversion mode {mode!r}")
    return settings


def _make_converter(job: Mapping[str, Any]):
    import tensorflow as tf

    settings = converter_settings(job["mode"])
    converter = tf.lite.TFLiteConverter.from_saved_model(job["saved_model"],
                                                         signature_keys=[job["signature"]])
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o)
                                           for o in settings["supported_ops"]]
    converter.optimizations = [getattr(tf.lite.Optimize, o) for o in settings["optimizations"]]
    converter.target_spec.supported_types = [getattr(tf, t) for t in settings["supported_types"]]
    if settings["representative_dataset"]:
        with np.load(job["representative"]) as f:
            samples = {k: f[k].astype(np.float32) for k in f.files}
        count = len(next(iter(samples.values())))

        def representative():
            for i in range(count):  # batch 1, inputs by name
                yield {k: v[i:i + 1] for k, v in samples.items()}

        converter.representative_dataset = representative
        if job["mode"] == _STRICT:
            converter.experimental_new_quantizer = False
    return converter


def _tensors(obj: Any, field: str) -> list[int]:
    """Tensor indices of a flatbuffer op/subgraph vector (`Inputs`/`Outputs`); the
    generated `...AsNumpy()` returns 0, not an empty array, for an empty vector."""
    return [int(getattr(obj, field)(j)) for j in range(getattr(obj, f"{field}Length")())]


def _signature_subgraph(root: Any, signature: str | None) -> Any:
    for i in range(root.SignatureDefsLength()):
        sig = root.SignatureDefs(i)
        if signature is None or sig.SignatureKey().decode() == signature:
            return root.Subgraphs(sig.SubgraphIndex())
    return root.Subgraphs(0)


def uint8_tail(model: bytes, signature: str | None = SIGNATURE) -> list[str]:
    """Output tensor names of the ops after the generator's last TANH (the `to_uint8`
    post-processing: add 1, scale by 127.5, clip, round, cast) in a `.tflite`.

    ValueError when the outputs are not reached from a TANH.
    """
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names.get(max(root.OperatorCodes(i).BuiltinCode(),
                           root.OperatorCodes(i).DeprecatedBuiltinCode()))
             for i in range(root.OperatorCodesLength())]
    sub = _signature_subgraph(root, signature)
    producer = {}
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        for t in _tensors(op, "Outputs"):
            producer[t] = op
    tail, found = [], False
    stack = _tensors(sub, "Outputs")
    seen = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        op = producer[t]
        if codes[op.OpcodeIndex()] == "TANH":
            found = True
            continue
        tail.append(sub.Tensors(t).Name().decode())
        stack += [x for x in _tensors(op, "Inputs") if x in producer]
    if not found or len(tail) > 16:
        raise ValueError("the model's output does not follow a final TANH within a few ops: "
                         "cannot tell the uint8 post-processing apart")
    return tail


def _quantize_with_float_tail(converter) -> bytes:
    """Calibrates and quantizes like `full_int8`, but keeps `uint8_tail` in float32:
    quantized, `(x + 1) * 127.5` gets the output's scale (~1), i.e. 3 levels for
    x + 1 in [0, 2] (measured: the whole of `full_int8`'s ~31-level mean error)."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter)
    tail = uint8_tail(debugger.calibrated_model)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=tail)
    return debugger.get_nondebug_quantized_model()


def _convert(job: Mapping[str, Any]) -> bytes:
    if job["mode"] == "mixed_int8":
        return _quantize_with_float_tail(_make_converter({**job, "mode": "full_int8"}))
    return _make_converter(job).convert()


def _run_job(job: Mapping[str, Any]) -> None:
    """Converts one job; writes `output` or `output.error` (the converter's message),
    then `output.seconds`."""
    start = time.perf_counter()
    try:
        model = _convert(job)
    except Exception as e:  # every converter failure is reported, whatever its type
        text_sidecar.write_bytes_atomic(job["output"] + ".error",
                                        f"{type(e).__name__}: {e}".encode())
    else:
        text_sidecar.write_bytes_atomic(job["output"], model)
    text_sidecar.write_bytes_atomic(job["output"] + ".seconds",
                                    str(time.perf_counter() - start).encode())


def worker_main(jobs_path: str) -> None:
    """The converter process: runs the jobs of `jobs_path` in order."""
    with open(jobs_path) as f:
        jobs = json.load(f)
    for job in jobs:
        open(job["output"] + ".started", "w").close()
        _run_job(job)


@dataclasses.dataclass
class JobResult:
    name: str
    model: bytes | None = None
    error: str | None = None
    seconds: float | None = None
    non_builtin_ops: list[str] = dataclasses.field(default_factory=list)


def _collect(job: Mapping[str, Any]) -> JobResult | None:
    out = job["output"]
    if not os.path.exists(out + ".seconds"):  # written last: the job did not finish
        return None
    with open(out + ".seconds") as f:
        result = JobResult(job["name"], seconds=float(f.read()))
    if os.path.exists(out):
        with open(out, "rb") as f:
            result.model = f.read()
    else:
        with open(out + ".error") as f:
            result.error = f.read()
    return result


def _stderr_tail(stderr: str, lines: int = 12) -> str:
    keep = [ln for ln in stderr.splitlines()
            if any(w in ln for w in ("ERROR", "error:", "Error", "Abort", "Fatal", "Check failed"))]
    return "\n".join((keep or stderr.splitlines())[-lines:])


def run_jobs(jobs: Sequence[Mapping[str, Any]], isolate: bool = True,
             timeout_s: float = 3600.0) -> dict[str, JobResult]:
    """Runs conversion jobs; name -> JobResult (model bytes or the error text).

    `isolate`: in a child process, restarted after a crash or timeout so the
    remaining jobs still run; the crashed job gets the exit status and the
    child's error lines as its error. `timeout_s` bounds one child process run.
    """
    results: dict[str, JobResult] = {}
    if not isolate:
        for job in jobs:
            _run_job(job)
            results[job["name"]] = _collect(job)
        return results
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pending = list(jobs)
    while pending:
        jobs_path = pending[0]["output"] + ".jobs.json"
        text_sidecar.write_json_atomic(jobs_path, list(pending))
        cmd = [sys.executable, "-c",
               "import sys; from tfvideogen.export.tflite import worker_main; "
               "worker_main(sys.argv[1])", jobs_path]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=timeout_s)
            failure = (f"the converter process died (exit status {done.returncode}) before "
                       f"finishing this job:\n{_stderr_tail(done.stderr)}")
        except subprocess.TimeoutExpired:
            failure = f"the converter process timed out after {timeout_s:g} s on this job"
        remaining = []
        for job in pending:
            result = _collect(job)
            if result is not None:
                results[job["name"]] = result
            elif os.path.exists(job["output"] + ".started"):
                results[job["name"]] = JobResult(job["name"], error=failure)
            else:
                remaining.append(job)
        if len(remaining) == len(pending):  # the child never started a job
            for job in remaining:
                results[job["name"]] = JobResult(job["name"], error=failure)
            remaining = []
        pending = remaining
    return results


# --------------------------------------------------------------------------- #
# Inspecting a converted model.

def model_ops(model: bytes, signature: str | None = None) -> dict[str, Any]:
    """Ops of a `.tflite` flatbuffer.

    `ops`: op name -> count over every subgraph (custom ops by their custom
    code, e.g. `FlexConv3D`); `non_builtin_ops`: the custom ones; `compute`: in
    the signature's subgraph, how many ops compute in `float`, `int8`, `hybrid`
    (int8 weights, float outputs), `other` (no float output, no int8 tensor: shapes,
    casts) or `boundary` (QUANTIZE/DEQUANTIZE), by output type; the names of the
    float and hybrid ones are in `float_ops`.
    """
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items()
                     if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(root.OperatorCodesLength()):
        oc = root.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            codes.append((False, (oc.CustomCode() or b"?").decode()))
        else:
            codes.append((True, builtin_names.get(code, f"BUILTIN_{code}")))
    ops: collections.Counter = collections.Counter()
    non_builtin = set()
    for s in range(root.SubgraphsLength()):
        sub = root.Subgraphs(s)
        for i in range(sub.OperatorsLength()):
            builtin, name = codes[sub.Operators(i).OpcodeIndex()]
            ops[name] += 1
            if not builtin:
                non_builtin.add(name)
    sub = _signature_subgraph(root, signature)
    compute: collections.Counter = collections.Counter()
    float_ops: collections.Counter = collections.Counter()
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        name = codes[op.OpcodeIndex()][1]
        # By what an op produces (SHAPE of a float tensor is integer work), plus
        # int8 inputs for hybrid ops (int8 weights, float activations).
        ins, outs = ({type_names.get(sub.Tensors(t).Type(), "?") for t in _tensors(op, f) if t >= 0}
                     for f in ("Inputs", "Outputs"))
        out_float = bool(outs & {"FLOAT32", "FLOAT16", "FLOAT64"})
        int8 = bool((ins | outs) & {"INT8", "INT16"})
        kind = ("boundary" if name in _BOUNDARY_OPS else "hybrid" if out_float and int8
                else "float" if out_float else "int8" if int8 else "other")
        compute[kind] += 1
        if kind in ("float", "hybrid"):
            float_ops[name] += 1
    return {"ops": dict(sorted(ops.items())), "non_builtin_ops": sorted(non_builtin),
            "compute": {k: compute.get(k, 0)
                        for k in ("float", "hybrid", "int8", "other", "boundary")},
            "float_ops": dict(sorted(float_ops.items()))}


# --------------------------------------------------------------------------- #
# Measuring.

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (peak 255); inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"latency_ms_p50": float(np.percentile(ms, 50)),
            "latency_ms_p90": float(np.percentile(ms, 90))}


def generator_runner(model: bytes | str, num_threads: int | None = None):
    """The `generate_from_embedding` signature runner of a converted model (bytes or
    path), after checking its input/output names (inputs are always fed by name)."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
    interpreter = Interpreter(num_threads=num_threads, **kwargs)
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        raise ValueError(f"the model has no {SIGNATURE!r} signature (has {sorted(signatures)})")
    sig = signatures[SIGNATURE]
    if sorted(sig["inputs"]) != sorted(INPUTS) or list(sig["outputs"]) != [OUTPUT]:
        raise ValueError(f"{SIGNATURE} has inputs {sig['inputs']} and outputs "
                         f"{sig['outputs']}; expected {sorted(INPUTS)} -> [{OUTPUT!r}]")
    return interpreter.get_signature_runner(SIGNATURE)


def evaluate(model: bytes, z: np.ndarray, embeddings: np.ndarray, reference: np.ndarray,
             latency_runs: int, num_threads: int) -> dict[str, Any]:
    """Parity (each row at batch 1) vs the SavedModel's uint8 `reference`, and latency."""
    runner = generator_runner(model, num_threads)
    rows = []
    for i in range(len(z)):
        out = runner(z=z[i:i + 1], text_embedding=embeddings[i:i + 1])[OUTPUT]
        if out.dtype != np.uint8 or out.shape[1:] != reference.shape[1:]:
            raise ValueError(f"video is {out.dtype} {out.shape}; expected uint8 "
                             f"{(1,) + reference.shape[1:]}")
        rows.append(out)
    video = np.concatenate(rows)
    diff = np.abs(video.astype(np.int16) - reference.astype(np.int16))
    value = psnr(video, reference)
    feed = {"z": z[:1], "text_embedding": embeddings[:1]}
    for _ in range(2):  # warm-up: allocation, first-run caches
        runner(**feed)
    seconds = []
    for _ in range(latency_runs):
        start = time.perf_counter()
        runner(**feed)
        seconds.append(time.perf_counter() - start)
    return {"max_abs_error": int(diff.max()), "mean_abs_error": float(diff.mean()),
            "psnr_db": None if math.isinf(value) else value,
            "differing_fraction": float(np.mean(diff > 0)), **_percentiles(seconds)}


# --------------------------------------------------------------------------- #
# Inputs: captions, embeddings, representative data, fixed evaluation pairs.

def read_metadata(saved_model: str) -> dict[str, Any]:
    """The export's `assets.extra/tfvideogen.json` ({} when absent)."""
    path = os.path.join(saved_model, "assets.extra", "tfvideogen.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def dataset_captions(metadata: Mapping[str, Any], dataset: str = "") -> tuple[str, list[str]]:
    """(dataset name, its captions over every split, de-duplicated).

    Dataset: `dataset` if given, else the exported run's (its `config.json`,
    from the export metadata), else the run's named experiment's.
    """
    from tfvideogen import config as config_lib
    from tfvideogen import data, training

    if dataset:
        name, ds = dataset, data.get(dataset)
    else:
        source = metadata.get("source") or {}
        model_dir, experiment = source.get("model_dir"), source.get("experiment")
        if model_dir and os.path.isfile(os.path.join(model_dir, "config.json")):
            cfg = training.load_run_config(model_dir)
        elif experiment in config_lib.EXPERIMENTS:
            logging.warning("run %s is gone; using experiment %r's dataset for captions",
                            model_dir, experiment)
            cfg = config_lib.get_experiment(experiment)
        else:
            raise ValueError("cannot tell which dataset the exported model was trained on (the "
                             "export names no existing run or known experiment): pass "
                             "--dataset or --captions_file")
        name, ds = cfg.data.name, training.trainer.dataset_for(cfg)
    captions = list(dict.fromkeys(c for split in ds.splits for c in ds.captions(split)))
    if not captions:
        raise ValueError(f"dataset {name!r} has no captions")
    return name, captions


def read_captions_file(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        captions = list(dict.fromkeys(line.strip() for line in f if line.strip()))
    if not captions:
        raise ValueError(f"{path} holds no captions (one caption a line)")
    return captions


def embed(loaded: Any, captions: Sequence[str], batch: int = 256) -> np.ndarray:
    """The SavedModel's `embed_text` on `captions`: float32 [N, D]."""
    import tensorflow as tf

    fn = loaded.signatures["embed_text"]
    try:
        parts = [fn(text=tf.constant(list(captions[i:i + batch])))["text_embedding"].numpy()
                 for i in range(0, len(captions), batch)]
    except tf.errors.InvalidArgumentError as e:  # e.g. a caption with no word in it
        lines = [ln for ln in e.message.splitlines() if "assertion failed" in ln]
        why = (lines or e.message.strip().splitlines())[0][:300]
        raise ValueError(f"embed_text refused the captions: {why}") from e
    return np.concatenate(parts).astype(np.float32)


def spread(items: Sequence[str], count: int) -> list[str]:
    """`count` items spread over `items` (cycled when there are fewer)."""
    step = max(1, len(items) // count)
    picked = list(items[::step][:count])
    return (picked * (count // len(picked) + 1))[:count]


# --------------------------------------------------------------------------- #
# The report.

def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def _num(x: float | None, fmt: str, none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _note(v: Mapping[str, Any]) -> str:
    text = v.get("reason") or ""
    return text.replace("|", "\\|").replace("\n", " ")[:400]


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown table (what `report.md` holds)."""
    ev, ref = report["evaluation"], report["reference"]
    shape = "x".join(str(d) for d in report["video_shape"])
    lines = [
        "# TFLite conversion report", "",
        f"Source: `{report['saved_model']}` signature `{SIGNATURE}` (video {shape} uint8, "
        f"z {report['z_dim']}, text embedding {report['text_dim']}). Parity: "
        f"{len(ev['seeds'])} fixed (caption, seed) pairs vs the SavedModel's uint8 video "
        f"(errors in 0-255 levels). Latency: p50 of {ev['latency_runs']} runs at batch 1 on "
        f"ai-edge-litert {report['versions']['ai_edge_litert']} with {ev['num_threads']} "
        f"thread(s), inputs fed by name. TensorFlow {report['versions']['tensorflow']}.", "",
        "| variant | status | size | max abs err | mean abs err | PSNR (dB) | p50 ms | notes |",
        "|---|---|---|---|---|---|---|---|",
        f"| SavedModel (reference) | - | - | 0 | 0 | inf | "
        f"{_num(ref['latency_ms_p50'], '.2f')} | TensorFlow, its default threads |"]
    for name, v in report["variants"].items():
        psnr_text = ("inf" if v.get("max_abs_error") == 0 else _num(v.get("psnr_db"), ".1f"))
        lines.append(
            f"| {name} | {v['status']} | {_size(v.get('size_bytes'))} | "
            f"{_num(v.get('max_abs_error'), 'd')} | {_num(v.get('mean_abs_error'), '.3f')} | "
            f"{psnr_text} | {_num(v.get('latency_ms_p50'), '.2f')} | {_note(v)} |")
    sc = report["sidecar"]
    lines += ["", f"Text sidecar (`{TEXT_DIR}/`): **{sc['kind']}** ({sc['file']}): {sc['reason']}",
              ""]
    return "\n".join(lines)


def _strip_location(line: str) -> str:
    """Drops MLIR's leading `loc(...)` (nested parentheses) and the colon after it."""
    if not line.startswith("loc("):
        return line
    depth = 0
    for i in range(3, len(line)):
        depth += {"(": 1, ")": -1}.get(line[i], 0)
        if depth == 0:
            return line[i + 1:].lstrip(": ")
    return line


def summarize_error(error: str, limit: int = 400) -> str:
    """The informative part of a converter message: MLIR locations and notes dropped,
    repeated lines merged, "not supported for op" lines folded into one op list."""
    seen: list[str] = []
    unsupported: list[str] = []
    for line in error.replace("\\n", "\n").splitlines():
        if "error:" in line:
            line = line.split("error:", 1)[1]
        line = _strip_location(re.sub(r"^\w+(Error|Exception): ", "", line.strip()))
        m = re.match(r"Quantization not yet supported for op: '(\w+)'", line)
        if m:
            if m[1] not in unsupported:
                unsupported.append(m[1])
        elif line and not line.startswith(("<unknown>:0: note", "note:")) and line not in seen:
            seen.append(line)
    if unsupported:
        seen.insert(0, f"quantization not yet supported for op(s) {', '.join(unsupported)}")
    return "; ".join(seen)[:limit] if seen else error[:limit]


def _variant_entry(variant: str, result: JobResult, strict: JobResult | None, path: str,
                   z: np.ndarray, embeddings: np.ndarray, reference: np.ndarray,
                   latency_runs: int, num_threads: int,
                   num_representative: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": "failed", "file": None, "size_bytes": None,
                             "converter": converter_settings(variant),
                             "convert_seconds": result.seconds, "error": None, "reason": None}
    if variant in ("full_int8", "mixed_int8"):
        entry["converter"]["representative_samples"] = num_representative
    if result.model is None:
        entry.update(error=result.error,
                     reason=f"conversion failed: {summarize_error(result.error)}")
        return entry
    ops = model_ops(result.model, SIGNATURE)
    entry.update(ops)
    if ops["non_builtin_ops"]:
        entry.update(error=f"non-builtin ops: {', '.join(ops['non_builtin_ops'])}",
                     reason="uses ops the stock interpreters lack")
        return entry
    try:
        entry.update(evaluate(result.model, z, embeddings, reference, latency_runs,
                              num_threads))
    except (RuntimeError, ValueError) as e:
        entry.update(error=f"{type(e).__name__}: {e}", reason=f"does not run: {e}"[:400])
        return entry
    text_sidecar.write_bytes_atomic(path, result.model)
    entry.update(status="ok", file=os.path.basename(path), size_bytes=len(result.model))
    floats = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in ops["float_ops"].items())
    if variant == "full_int8" and ops["float_ops"]:
        why = (strict.error if strict is not None and strict.error
               else "the strict quantizer gave no reason")
        entry.update(status="partial", full_integer=False, strict_quantizer_error=why,
                     reason=f"not full-integer: ops left in float32 (no int8 kernels): "
                            f"{floats}. Strict quantizer: {summarize_error(why, 300)}")
    elif variant == "full_int8":
        entry["full_integer"] = True
    elif variant == "mixed_int8":
        entry.update(full_integer=False,
                     reason=f"int8 except the uint8 post-processing and ops without int8 "
                            f"kernels (float32: {floats or 'none'})")
    return entry


def convert(saved_model: str, out_dir: str, variants: Sequence[str] = VARIANTS, *,
            captions: Sequence[str] | None = None, dataset: str = "", num_eval: int = 4,
            num_representative: int = 64, latency_runs: int = 30, num_threads: int = 1,
            isolate: bool = True, seed: int = 0, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Converts `saved_model`'s `generate_from_embedding` into each variant, writes
    the text sidecar and `report.json`/`report.md` into `out_dir`; returns the report.

    `captions`: the caption list (representative embeddings, the precomputed
    sidecar, evaluation); default: the exported run's dataset (or `dataset`).
    Evaluation pairs: `num_eval` captions spread over the list with seeds 0..n-1.
    A variant that fails has no file (a stale one is removed) and status `failed`.
    """
    import tensorflow as tf

    from tfvideogen import models
    from tfvideogen.models.task import check_captions

    variants = TFLiteConfig(saved_model, out_dir, tuple(variants), dataset, "", num_eval,
                            num_representative, latency_runs, num_threads, isolate, seed,
                            timeout_s).validate().variants
    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise FileNotFoundError(f"no saved_model.pb in {saved_model}: pass an export version "
                                f"directory (e.g. models/tfvideogen/1)")
    loaded = tf.saved_model.load(saved_model)
    missing = {SIGNATURE, "embed_text"} - set(loaded.signatures)
    if missing:
        raise ValueError(f"{saved_model} lacks signature(s) {sorted(missing)} (has "
                         f"{sorted(loaded.signatures)}); export it with export/saved_model.py")
    sig = loaded.signatures[SIGNATURE]
    specs = sig.structured_input_signature[1]
    z_dim, text_dim = int(specs["z"].shape[-1]), int(specs["text_embedding"].shape[-1])
    video_shape = [int(d) for d in sig.structured_outputs[OUTPUT].shape[1:]]
    metadata = read_metadata(saved_model)
    dataset_name = dataset or None
    if captions is None:
        dataset_name, captions = dataset_captions(metadata, dataset)
    captions = list(captions)
    check_captions(captions)
    embeddings = embed(loaded, captions)

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix=".tflite-work-", dir=out_dir) as work:
        rep_path = os.path.join(work, "representative.npz")
        np.savez(rep_path, z=rng.standard_normal((num_representative, z_dim)).astype(np.float32),
                 text_embedding=embeddings[rng.integers(0, len(captions), num_representative)])
        eval_captions = spread(captions, num_eval)
        seeds = np.arange(num_eval, dtype=np.int64)
        z = models.latents_from_seeds(seeds, z_dim).numpy()
        eval_emb = embed(loaded, eval_captions)
        reference = sig(z=tf.constant(z), text_embedding=tf.constant(eval_emb))[OUTPUT].numpy()
        ref_seconds = []
        for i in range(latency_runs + 2):
            start = time.perf_counter()
            sig(z=tf.constant(z[:1]), text_embedding=tf.constant(eval_emb[:1]))
            if i >= 2:
                ref_seconds.append(time.perf_counter() - start)

        check = list(dict.fromkeys(list(captions[:64]) + list(PROBE_CAPTIONS)))
        check_emb = embed(loaded, check)
        plan = text_sidecar.plan_encoder(loaded, metadata, check, check_emb, work)

        jobs = []
        for variant in variants:
            modes = [variant] + ([_STRICT] if variant == "full_int8" else [])
            jobs += [{"name": m, "mode": m, "saved_model": saved_model, "signature": SIGNATURE,
                      "output": os.path.join(work, f"{m}.tflite"), "representative": rep_path}
                     for m in modes]
        jobs += [{"name": name, "mode": "float32", "saved_model": path,
                  "signature": text_sidecar.SIGNATURE, "representative": None,
                  "output": os.path.join(work, f"{name}.tflite")}
                 for name, (path, _) in plan.sources.items()]
        logging.info("converting %d job(s)%s", len(jobs), " in a worker process" if isolate else "")
        results = run_jobs(jobs, isolate=isolate, timeout_s=timeout_s)

        entries = {}
        for variant in variants:
            path = os.path.join(out_dir, model_file(variant))
            entry = _variant_entry(variant, results[variant], results.get(_STRICT), path, z,
                                   eval_emb, reference, latency_runs, num_threads,
                                   num_representative)
            if entry["status"] == "failed" and os.path.exists(path):
                os.remove(path)  # never leave an older conversion next to a failure report
            entries[variant] = entry
            logging.info("%s: %s %s", variant, entry["status"], entry.get("reason") or "")
        for name in plan.sources:
            r = results[name]
            if r.model is not None:
                r.non_builtin_ops = model_ops(r.model)["non_builtin_ops"]
        sidecar = text_sidecar.finish(plan, results, os.path.join(out_dir, TEXT_DIR), check,
                                      check_emb, captions, embeddings)

    from ai_edge_litert import __version__ as litert_version

    report = {
        "format": 1, "saved_model": os.path.abspath(saved_model), "signature": SIGNATURE,
        "video_shape": video_shape, "z_dim": z_dim, "text_dim": text_dim,
        "inputs": {"z": ["float32", [-1, z_dim]], "text_embedding": ["float32", [-1, text_dim]]},
        "outputs": {OUTPUT: ["uint8", [-1] + video_shape]},
        "source": metadata.get("source"), "dataset": dataset_name,
        # The SavedModel's serving_default latent scale: the runtime's seed -> z uses it too.
        "truncation": float(metadata.get("truncation", 1.0)),
        "versions": {"tensorflow": tf.__version__, "ai_edge_litert": litert_version},
        "evaluation": {"captions": eval_captions, "seeds": seeds.tolist(), "batch": 1,
                       "latency_runs": latency_runs, "num_threads": num_threads,
                       "seed_to_z": "tfvideogen.models.latents_from_seeds"},
        "reference": _percentiles(ref_seconds),
        "variants": entries,
        "sidecar": {"dir": TEXT_DIR, **{k: sidecar[k] for k in ("kind", "file", "reason")}},
    }
    text_sidecar.write_json_atomic(os.path.join(out_dir, REPORT_JSON), report)
    text_sidecar.write_bytes_atomic(os.path.join(out_dir, REPORT_MD), markdown(report).encode())
    return report


def convert_from_config(cfg: TFLiteConfig) -> dict[str, Any]:
    """`convert` driven by a `TFLiteConfig`; returns the report."""
    cfg.validate()
    captions = read_captions_file(cfg.captions_file) if cfg.captions_file else None
    return convert(cfg.saved_model, cfg.out_dir, cfg.variants, captions=captions,
                   dataset=cfg.dataset, num_eval=cfg.num_eval,
                   num_representative=cfg.num_representative, latency_runs=cfg.latency_runs,
                   num_threads=cfg.num_threads, isolate=cfg.isolate, seed=cfg.seed,
                   timeout_s=cfg.timeout_s)


def load_report(out_dir: str) -> dict[str, Any]:
    """The `report.json` that `convert` wrote into `out_dir`."""
    path = os.path.join(out_dir, REPORT_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {REPORT_JSON} in {out_dir}: not a TFLite conversion "
                                f"directory (run export/tflite.py)")
    with open(path) as f:
        return json.load(f)
