"""Caption -> text embedding next to the generator `.tflite` (TFLite runs no string ops).

The generator `.tflite` takes a `text_embedding`; this sidecar is how a device
app gets one from a caption. `sidecar.json` records which kind was written and why:

- `tflite_encoder` (the built-in GRU encoder): `text_encoder.tflite`, the encoder's
  `embed_tokens` (signature `embed_tokens`: `token_ids` int32 [B, max_tokens] ->
  `text_embedding` float32 [B, D]; B is fixed to 1 when only the batch-1 graph
  converts), plus `vocabulary.txt` and `tokenizer.json`. Apps tokenise with the
  rules of `normalize`/`Tokenizer` below (the same ids as `TextEncoder.tokenize`).
- `precomputed` (any other encoder, or a GRU that does not convert to builtins):
  `caption_embeddings.json`, the SavedModel's `embed_text` on a caption list (the
  dataset's captions); only those exact captions can be embedded.

Everything is read from the SavedModel itself (its StringLookup table, its
encoder variables and metadata), not from the training run, so the sidecar
always belongs to the exported weights; the rebuilt encoder and the converted
`.tflite` are both checked against `embed_text` (max |diff| <= `TOLERANCE`)
before the `tflite_encoder` kind is written.

Why the GRU needs care (TF 2.17, measured): its time loop holds a TensorList
whose element shape has the batch size, so the dynamic-batch graph fails
("TensorListReserve requires element_shape to be static"); with a fixed batch of
1 it converts to builtins (WHILE, GATHER, FULLY_CONNECTED, ...), so the sidecar
encoder takes one caption per call. The conversion source is written with
`keras.export.ExportArchive`: Keras 3 layers saved with plain
`tf.saved_model.save` (or given as concrete functions) abort the converter
process (LLVM "missing attribute 'value'", any layer), which is also why
conversions run in a separate process (`tfvideogen.export.tflite.run_jobs`).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

PAD_ID = 0  # padding after the last word
OOV_ID = 1  # a word not in the vocabulary
FIRST_WORD_ID = 2  # vocabulary[i] -> i + 2
STRIP_PATTERN = "[^a-z0-9' ]+"  # after ASCII lowercasing, runs of these become one space
TOLERANCE = 1e-5  # max |embedding diff| vs `embed_text` for the `tflite_encoder` kind
SIGNATURE = "embed_tokens"

SIDECAR_FILE = "sidecar.json"
VOCABULARY_FILE = "vocabulary.txt"
TOKENIZER_FILE = "tokenizer.json"
ENCODER_FILE = "text_encoder.tflite"
EMBEDDINGS_FILE = "caption_embeddings.json"
KINDS = ("tflite_encoder", "precomputed")

# Undecodable bytes (surrogateescape: U+DC80-U+DCFF) are kept, as RE2 keeps them.
_STRIP = re.compile("[^a-z0-9' \udc80-\udcff]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SUFFIX = re.compile(r"_\d+$")


# --------------------------------------------------------------------------- #
# Tokenisation (a re-implementation of `TextEncoder.tokenize` without TF).

def _re2_decode_error(err: UnicodeDecodeError) -> tuple[str, int]:
    """Decodes invalid UTF-8 the way RE2 reads it: an encoded surrogate (ED A0-BF
    80-BF) is one non-ASCII character; any other bad byte stays as a lone
    surrogate U+DC80-U+DCFF (surrogateescape), which `_STRIP` keeps."""
    data, i = err.object, err.start
    if (data[i] == 0xED and i + 2 < len(data) and 0xA0 <= data[i + 1] <= 0xBF
            and 0x80 <= data[i + 2] <= 0xBF):
        return "\ufffd", i + 3
    return chr(0xDC00 + data[i]), i + 1


_RE2_DECODE = "tfvideogen-re2"
codecs.register_error(_RE2_DECODE, _re2_decode_error)


def normalize(caption: str | bytes) -> str:
    """The encoder's `normalize()`: ASCII-only lowercasing, then every run of
    characters outside `[a-z0-9' ]` becomes one space.

    Matches TF byte for byte: `tf.strings.lower` leaves non-ASCII letters alone
    (Python's `str.lower` would turn the Kelvin sign into `k`), and RE2 leaves
    bytes that are not valid UTF-8 in place (they decode here as lone surrogates,
    so they end up in an OOV word as in TF).
    """
    text = (caption.decode("utf-8", _RE2_DECODE) if isinstance(caption, bytes)
            else str(caption))
    return _STRIP.sub(" ", text.translate(_ASCII_LOWER))


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """Caption -> int32 ids [max_tokens]: 0 = padding, 1 = OOV, vocabulary[i] -> i + 2.

    Words are the whitespace-separated pieces of `normalize(caption)`; words past
    `max_tokens` are dropped (as `TextEncoder.tokenize` does).
    """

    vocabulary: tuple[str, ...]
    max_tokens: int

    def __post_init__(self):
        vocab = tuple(str(w) for w in self.vocabulary)
        object.__setattr__(self, "vocabulary", vocab)
        if not vocab:
            raise ValueError("the tokenizer needs a non-empty vocabulary")
        if len(set(vocab)) != len(vocab) or "" in vocab:
            raise ValueError("the vocabulary must hold distinct, non-empty words")
        if int(self.max_tokens) <= 0:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        object.__setattr__(self, "_index", {w: i + FIRST_WORD_ID for i, w in enumerate(vocab)})

    def words(self, caption: str | bytes) -> list[str]:
        return [w for w in normalize(caption).split(" ") if w]

    def ids(self, captions: str | bytes | Sequence[str | bytes]) -> np.ndarray:
        """Captions -> int32 [B, max_tokens]; ValueError names an empty caption."""
        if isinstance(captions, str | bytes):
            captions = [captions]
        captions = list(captions)
        if not captions:
            raise ValueError("no captions given")
        out = np.full((len(captions), self.max_tokens), PAD_ID, np.int32)
        for row, caption in enumerate(captions):
            words = self.words(caption)
            if not words:
                raise ValueError(f"caption {row} ({caption!r}) is empty after normalisation: "
                                 f"every caption needs at least one word")
            for col, word in enumerate(words[:self.max_tokens]):
                out[row, col] = self._index.get(word, OOV_ID)
        return out

    def to_json(self) -> dict[str, Any]:
        """What a device app needs to reproduce `ids` (also written as tokenizer.json)."""
        return {"max_tokens": int(self.max_tokens), "pad_id": PAD_ID, "oov_id": OOV_ID,
                "first_word_id": FIRST_WORD_ID, "dtype": "int32",
                "rules": ["read the caption as UTF-8",
                          "lowercase ASCII A-Z only (other characters unchanged)",
                          f"replace every run of characters matching {STRIP_PATTERN} with one "
                          f"space (bytes that are not valid UTF-8 are kept)",
                          "split on spaces, drop empty pieces",
                          "keep the first max_tokens words",
                          "word -> first_word_id + its line in vocabulary.txt, else oov_id",
                          "pad with pad_id to max_tokens; a caption with no word is an error"],
                "strip_pattern": STRIP_PATTERN, "vocabulary_file": VOCABULARY_FILE,
                "vocabulary_size": len(self.vocabulary)}

    @classmethod
    def load(cls, directory: str) -> Tokenizer:
        with open(os.path.join(directory, TOKENIZER_FILE)) as f:
            spec = json.load(f)
        with open(os.path.join(directory, spec.get("vocabulary_file", VOCABULARY_FILE))) as f:
            vocab = [line.rstrip("\n") for line in f if line.rstrip("\n")]
        if len(vocab) != spec["vocabulary_size"]:
            raise ValueError(f"{directory}: vocabulary file has {len(vocab)} words, "
                             f"tokenizer.json says {spec['vocabulary_size']}")
        return cls(tuple(vocab), int(spec["max_tokens"]))


# --------------------------------------------------------------------------- #
# Reading the encoder back from the SavedModel.

def saved_model_vocabulary(loaded: Any) -> list[str]:
    """The built-in encoder's vocabulary from the SavedModel's StringLookup table.

    ValueError (with the reason) when there is not exactly one string -> int64
    table holding ids 2..V+1 (e.g. a TF-Hub encoder).
    """
    import tensorflow as tf

    tables = []
    for obj in tf.train.TrackableView(loaded).descendants():
        if not isinstance(obj, tf.saved_model.experimental.TrackableResource):
            continue
        try:  # restored StaticHashTables have no .export(); the raw op works
            keys, values = tf.raw_ops.LookupTableExportV2(
                table_handle=obj.resource_handle, Tkeys=tf.string, Tvalues=tf.int64)
        except (tf.errors.OpError, TypeError, ValueError):
            continue
        tables.append((keys.numpy(), values.numpy()))
    if len(tables) != 1:
        raise ValueError(f"expected one string->int64 lookup table (the built-in encoder's "
                         f"vocabulary) in the SavedModel, found {len(tables)}")
    keys, values = tables[0]
    order = np.argsort(values)
    if not np.array_equal(values[order], np.arange(FIRST_WORD_ID, FIRST_WORD_ID + len(keys))):
        raise ValueError("the lookup table's ids are not 2..V+1: not the built-in encoder's "
                         "StringLookup")
    return [k.decode("utf-8") for k in keys[order]]


def _encoder_key(name: str) -> str | None:
    """'text_to_video/text_encoder/bigru/forward_gru_1/gru_cell/kernel:0' ->
    'bigru/forward_gru/gru_cell/kernel' (Keras uniquifies names with _N)."""
    name = name.split(":")[0]
    if "text_encoder/" not in name:
        return None
    rest = name.rsplit("text_encoder/", 1)[1]
    return "/".join(_SUFFIX.sub("", part) for part in rest.split("/"))


def rebuild_text_encoder(loaded: Any, metadata: Mapping[str, Any]) -> Any:
    """A float32 `TextEncoder` with the SavedModel's vocabulary and weights.

    Sizes come from the variables' shapes and `max_tokens` from the export's
    `tfvideogen.json`. ValueError (with the reason) when the SavedModel does not
    hold a built-in encoder. The caller must still compare it with `embed_text`.
    """
    from tfvideogen import models
    from tfvideogen.export.saved_model import float32_policy

    max_tokens = int(metadata.get("max_tokens") or 0)
    if max_tokens <= 0:
        raise ValueError("the export's tfvideogen.json has no max_tokens (not a built-in "
                         "text encoder)")
    vocab = saved_model_vocabulary(loaded)
    source = {}
    for v in loaded.variables:
        key = _encoder_key(v.name)
        if key is not None and "seed_generator" not in key:
            if key in source:
                raise ValueError(f"two encoder variables map to {key!r}")
            source[key] = v
    emb = source.get("embedding/embeddings")
    kernel = source.get("bigru/forward_gru/gru_cell/recurrent_kernel")
    proj = source.get("projection/kernel")
    if emb is None or proj is None:
        raise ValueError("the SavedModel holds no text_encoder/{embedding,projection} "
                         "variables (not the built-in encoder)")
    routes = source.get("routing/embeddings")
    # No GRU variables: the bag-of-words encoder (pooling="mean"); routing
    # variables: pooling="routed" (projection kernel [heads, E, D / heads]), its
    # fixed routes a [vocab, 2] table (row = token id; head 1: the route words).
    if routes is not None or "routing/kernel" in source:
        pooling = {"pooling": "routed", "heads": int(proj.shape[0]),
                   "output_dim": int(proj.shape[0]) * int(proj.shape[2])}
        if routes is not None:
            table = np.asarray(routes.numpy())
            pooling["route_words"] = [w for i, w in enumerate(vocab) if table[i + 2, 1] > 0.5]
    elif kernel is not None:
        pooling = {"pooling": "gru", "hidden_dim": int(kernel.shape[0]),
                   "output_dim": int(proj.shape[1])}
    else:
        pooling = {"pooling": "mean", "output_dim": int(proj.shape[1])}
    with float32_policy():
        encoder = models.TextEncoder(vocab, max_tokens=max_tokens,
                                     embedding_dim=int(emb.shape[1]), name="text_encoder",
                                     **pooling)
        encoder.build()
    targets = {_encoder_key(w.path): w for w in encoder.weights}
    if set(targets) != set(source):
        raise ValueError(f"encoder variables differ from the built-in encoder's: missing "
                         f"{sorted(set(targets) - set(source))}, extra "
                         f"{sorted(set(source) - set(targets))}")
    for key, w in targets.items():
        if tuple(w.shape) != tuple(source[key].shape):
            raise ValueError(f"{key}: shape {tuple(source[key].shape)} in the SavedModel, "
                             f"{tuple(w.shape)} in the rebuilt encoder")
        w.assign(source[key].numpy())
    return encoder


def export_embed_tokens(encoder: Any, path: str, batch: int | None) -> str:
    """Writes a SavedModel with one signature `embed_tokens`: `token_ids` int32
    [batch, max_tokens] -> `text_embedding` float32 [batch, D] (the conversion source).

    Only the embedding, GRU or routing (if any) and projection are tracked: the string
    table stays out.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    pooling = {"gru": [getattr(encoder, "rnn", None)],
               "routed": [getattr(encoder, "routing", None)]}.get(encoder.pooling, [])
    for layer in [encoder.embedding, *pooling, encoder.projection]:
        archive.track(layer)

    def embed_tokens(token_ids):
        out = encoder.embed_tokens(token_ids, training=False)
        return {"text_embedding": tf.cast(out, tf.float32)}

    spec = tf.TensorSpec([batch, encoder.max_tokens], tf.int32, name="token_ids")
    archive.add_endpoint(SIGNATURE, embed_tokens, [spec])
    archive.write_out(path, verbose=False)
    return path


# --------------------------------------------------------------------------- #
# Building the sidecar (used by `tfvideogen.export.tflite.convert`).

@dataclasses.dataclass
class EncoderPlan:
    """What to try for the `tflite_encoder` kind.

    `sources`: name -> (SavedModel dir, batch) conversion sources, preferred first
    (dynamic batch, then batch 1). Empty with a `reason` when the SavedModel's
    encoder cannot be rebuilt or does not reproduce `embed_text`.
    """

    tokenizer: Tokenizer | None = None
    sources: dict[str, tuple[str, int | None]] = dataclasses.field(default_factory=dict)
    reason: str = ""
    rebuilt_max_abs_error: float | None = None


def plan_encoder(loaded: Any, metadata: Mapping[str, Any], captions: Sequence[str],
                 embeddings: np.ndarray, work_dir: str) -> EncoderPlan:
    """Rebuilds the built-in encoder from the SavedModel, checks it against
    `embeddings` (= `embed_text(captions)`) and writes its conversion sources."""
    try:
        encoder = rebuild_text_encoder(loaded, metadata)
    except ValueError as e:
        return EncoderPlan(reason=f"no built-in text encoder to convert: {e}")
    import tensorflow as tf

    got = encoder(tf.constant(list(captions)), training=False).numpy()
    err = float(np.abs(got - embeddings).max())
    tokenizer = Tokenizer(tuple(encoder.vocabulary), encoder.max_tokens)
    if err > TOLERANCE:
        return EncoderPlan(tokenizer=tokenizer, rebuilt_max_abs_error=err,
                           reason=f"the encoder rebuilt from the SavedModel differs from "
                                  f"embed_text by {err:.3g} > {TOLERANCE:g}")
    sources = {}
    for name, batch in (("text_encoder_dynamic_batch", None), ("text_encoder_batch1", 1)):
        sources[name] = (export_embed_tokens(encoder, os.path.join(work_dir, name), batch),
                         batch)
    return EncoderPlan(tokenizer=tokenizer, sources=sources, rebuilt_max_abs_error=err)


def check_encoder_model(model: bytes, tokenizer: Tokenizer, captions: Sequence[str],
                        embeddings: np.ndarray, batch: int | None) -> float:
    """Runs a converted encoder on `captions` (Python tokenizer, inputs by name) and
    returns max |diff| vs `embeddings` (the SavedModel's `embed_text`)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model).get_signature_runner(SIGNATURE)
    ids = tokenizer.ids(captions)
    if batch is None:
        got = runner(token_ids=ids)["text_embedding"]
    else:
        got = np.concatenate([runner(token_ids=ids[i:i + 1])["text_embedding"]
                              for i in range(len(ids))])
    return float(np.abs(got - np.asarray(embeddings, np.float32)).max())


def finish(plan: EncoderPlan, results: Mapping[str, Any], directory: str,
           check_captions: Sequence[str], check_embeddings: np.ndarray,
           captions: Sequence[str], embeddings: np.ndarray) -> dict[str, Any]:
    """Writes the sidecar into `directory` and returns its manifest (also `sidecar.json`).

    `results`: source name -> an object with `.model` (bytes or None), `.error`
    and `.non_builtin_ops` from the conversion. The first source that converted,
    uses builtins only and reproduces `check_embeddings` (= `embed_text` of
    `check_captions`, tokenised by `Tokenizer`) within `TOLERANCE` wins;
    otherwise `embeddings` of `captions` are written (`precomputed`).
    """
    from tfvideogen.export.tflite import summarize_error

    os.makedirs(directory, exist_ok=True)
    embeddings = np.asarray(embeddings, np.float32)
    attempts = []
    chosen = None
    for name, (_, batch) in plan.sources.items():
        result = results[name]
        attempt = {"name": name, "batch": batch, "converted": result.model is not None,
                   "error": result.error}
        if result.model is not None and chosen is None:
            if result.non_builtin_ops:
                attempt["error"] = f"non-builtin ops: {', '.join(result.non_builtin_ops)}"
            else:
                err = check_encoder_model(result.model, plan.tokenizer, check_captions,
                                          check_embeddings, batch)
                attempt["max_abs_error"] = err
                if err <= TOLERANCE:
                    chosen = (name, batch, result.model, err)
                else:
                    attempt["error"] = f"drifts from embed_text by {err:.3g} > {TOLERANCE:g}"
        attempts.append(attempt)
    manifest: dict[str, Any] = {"format": 1, "text_dim": int(embeddings.shape[1]),
                                "attempts": attempts, "tolerance": TOLERANCE,
                                "rebuilt_encoder_max_abs_error": plan.rebuilt_max_abs_error}
    if plan.tokenizer is not None:
        write_vocabulary(directory, plan.tokenizer)
        manifest["tokenizer"] = TOKENIZER_FILE
        manifest["vocabulary"] = VOCABULARY_FILE
    if chosen is not None:
        name, batch, model, err = chosen
        write_bytes_atomic(os.path.join(directory, ENCODER_FILE), model)
        remove_stale(directory, (ENCODER_FILE, VOCABULARY_FILE, TOKENIZER_FILE))
        failed = [a for a in attempts if a["name"] != name and a["error"]]
        why = (f"the masked bidirectional GRU converts to TFLite builtins"
               f"{' at batch 1 only' if batch == 1 else ''}")
        if failed:
            why += f" ({failed[0]['name']}: {summarize_error(failed[0]['error'], 300)})"
        manifest.update(kind="tflite_encoder", file=ENCODER_FILE, signature=SIGNATURE,
                        batch=batch, max_abs_error=err, reason=why,
                        inputs={"token_ids": ["int32", [batch or -1,
                                                        plan.tokenizer.max_tokens]]},
                        outputs={"text_embedding": ["float32", [batch or -1,
                                                               int(embeddings.shape[1])]]})
    else:
        reason = plan.reason or "; ".join(
            f"{a['name']}: {summarize_error(a['error'] or 'failed', 300)}" for a in attempts)
        write_precomputed(directory, captions, embeddings)
        keep = [EMBEDDINGS_FILE] + ([VOCABULARY_FILE, TOKENIZER_FILE] if plan.tokenizer else [])
        remove_stale(directory, keep)
        manifest.update(kind="precomputed", file=EMBEDDINGS_FILE, num_captions=len(captions),
                        reason=f"no TFLite text encoder: {reason}")
    write_json_atomic(os.path.join(directory, SIDECAR_FILE), manifest)
    return manifest


# --------------------------------------------------------------------------- #
# Writing.

def write_bytes_atomic(path: str, data: bytes) -> str:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str, obj: Any) -> str:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_precomputed(directory: str, captions: Sequence[str], embeddings: np.ndarray) -> str:
    """`caption_embeddings.json`: {"text_dim", "captions": [{"caption", "embedding"}]}."""
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(captions):
        raise ValueError(f"need one embedding per caption, got {embeddings.shape} for "
                         f"{len(captions)} captions")
    # float32 -> Python float -> JSON -> float32 round-trips exactly.
    rows = [{"caption": c, "embedding": [float(x) for x in e]}
            for c, e in zip(captions, embeddings)]
    return write_json_atomic(os.path.join(directory, EMBEDDINGS_FILE),
                             {"text_dim": int(embeddings.shape[1]), "captions": rows})


def write_vocabulary(directory: str, tokenizer: Tokenizer) -> None:
    write_bytes_atomic(os.path.join(directory, VOCABULARY_FILE),
                       ("\n".join(tokenizer.vocabulary) + "\n").encode("utf-8"))
    write_json_atomic(os.path.join(directory, TOKENIZER_FILE), tokenizer.to_json())


def remove_stale(directory: str, keep: Iterable[str]) -> None:
    """Drops sidecar files of the other kind left by an earlier conversion."""
    keep = set(keep)
    for name in (ENCODER_FILE, EMBEDDINGS_FILE, VOCABULARY_FILE, TOKENIZER_FILE):
        if name not in keep and os.path.exists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))


# --------------------------------------------------------------------------- #
# Runtime.

class TextSidecar:
    """Loads a sidecar directory: `embed(captions)` -> float32 [B, D].

    Runs on numpy and ai-edge-litert (no TensorFlow op is used).
    """

    def __init__(self, directory: str, num_threads: int | None = None):
        self.directory = directory
        path = os.path.join(directory, SIDECAR_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {SIDECAR_FILE} in {directory}: not a text sidecar")
        with open(path) as f:
            self.manifest = json.load(f)
        self.kind = self.manifest["kind"]
        self.text_dim = int(self.manifest["text_dim"])
        self.tokenizer: Tokenizer | None = None
        self._runner = None
        self._table: dict[str, np.ndarray] = {}
        if self.kind == "tflite_encoder":
            from ai_edge_litert.interpreter import Interpreter

            self.tokenizer = Tokenizer.load(directory)
            interpreter = Interpreter(model_path=os.path.join(directory, ENCODER_FILE),
                                      num_threads=num_threads)
            self._runner = interpreter.get_signature_runner(SIGNATURE)
            batch = int(self._runner.get_input_details()["token_ids"]["shape_signature"][0])
            if batch not in (-1, 1):
                raise ValueError(f"{ENCODER_FILE}: batch {batch}; expected dynamic or 1")
            self.fixed_batch = None if batch == -1 else 1
        elif self.kind == "precomputed":
            with open(os.path.join(directory, EMBEDDINGS_FILE)) as f:
                rows = json.load(f)["captions"]
            self._table = {r["caption"]: np.asarray(r["embedding"], np.float32) for r in rows}
        else:
            raise ValueError(f"{path}: unknown sidecar kind {self.kind!r}; valid: {KINDS}")

    @property
    def captions(self) -> list[str]:
        """The captions a `precomputed` sidecar knows (empty for `tflite_encoder`)."""
        return list(self._table)

    def embed(self, captions: str | Sequence[str]) -> np.ndarray:
        """Captions -> float32 [B, text_dim]. A `precomputed` sidecar raises KeyError
        for a caption it does not hold (exact match)."""
        captions = [captions] if isinstance(captions, str | bytes) else list(captions)
        if not captions:
            raise ValueError("no captions given")
        if self.kind == "precomputed":
            missing = [c for c in captions if c not in self._table]
            if missing:
                raise KeyError(f"caption {missing[0]!r} has no precomputed embedding; this "
                               f"sidecar ({self.manifest.get('reason', '')}) holds "
                               f"{len(self._table)} captions, e.g. {self.captions[:3]}")
            return np.stack([self._table[c] for c in captions])
        ids = self.tokenizer.ids(captions)
        if self.fixed_batch is None:
            return self._runner(token_ids=ids)["text_embedding"]
        return np.concatenate([self._runner(token_ids=ids[i:i + 1])["text_embedding"]
                               for i in range(len(ids))])
