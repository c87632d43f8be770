"""TF-Hub text encoders (NNLM, Universal Sentence Encoder, BERT, ...) as a Keras 3 model.

    enc = HubTextEncoder("https://tfhub.dev/google/nnlm-en-dim50/2")        # frozen
    enc = HubTextEncoder("/models/bert_en_uncased_L-4_H-256_A-4",
                         preprocessor="/models/bert_en_uncased_preprocess",
                         output_key="pooled_output", trainable=True)
    emb = enc(tf.constant(["a red square is moving up and down"]))  # float32 [1, D]

`hub.KerasLayer` is a tf_keras layer and does not work in Keras 3 models, so
the module is loaded with `tensorflow_hub.load` and wrapped here. The layer's
weights are keras.Variables that share the module's own tf.Variables, so
`trainable=True` fine-tunes the module in place and a frozen module is frozen
for every Keras container it sits in.

Handles are fetched (or found in the `TFHUB_CACHE_DIR` cache) once per
process; an offline machine gets a :class:`HubLoadError` within seconds that
says how to pre-cache the module or point at a local copy. There is no
fallback to another encoder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import keras
import tensorflow as tf
from keras.src.saving import serialization_lib  # in_safe_mode() has no public alias

from tfvideogen.models.layers import PACKAGE

# Bound on reaching the host of a remote handle (DNS + TCP connect).
PROBE_TIMEOUT_S = 5.0
# Per blocking socket operation while downloading (a stalled transfer fails
# instead of hanging; a slow but moving one is fine).
DOWNLOAD_SOCKET_TIMEOUT_S = 60.0
_PROBE_TEXT = "a red square is moving up and down"


class HubLoadError(RuntimeError):
    """A TF-Hub handle could not be resolved or loaded (message says what to do)."""


# --------------------------------------------------------------------------- #
# Resolving and loading handles.

def is_remote(handle: str) -> bool:
    """True for handles `hub.load` downloads (http(s) URLs, gs:// tarballs)."""
    return handle.startswith(("http://", "https://")) or (
        handle.startswith("gs://") and handle.endswith((".tar", ".tar.gz", ".tgz")))


def cache_dir() -> str:
    """The directory `hub.load` caches downloads in (TFHUB_CACHE_DIR or its default)."""
    from tensorflow_hub import resolver

    return resolver.tfhub_cache_dir(use_temp=True)


def cached_module_dir(handle: str) -> str:
    """Where a downloaded `handle` lives: `<cache dir>/<sha1 of the handle>`."""
    return os.path.join(cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def _uncompressed_format() -> bool:
    # TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED asks tfhub.dev for a gs:// path every time.
    from tensorflow_hub import resolver

    return resolver.model_load_format() == resolver.ModelLoadFormat.UNCOMPRESSED.value


def _is_cached(handle: str) -> bool:
    path = cached_module_dir(handle)
    return tf.io.gfile.isdir(path) and bool(tf.io.gfile.listdir(path))


def _probe_address(handle: str) -> tuple[str, int]:
    """(host, port) a download of `handle` connects to first (a proxy if one applies)."""
    url = urllib.parse.urlparse(handle if not handle.startswith("gs://")
                                else "https://storage.googleapis.com/")
    scheme = url.scheme
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.hostname or "", port


def _probe(handle: str, timeout: float) -> None:
    """Raises HubLoadError unless the handle's host accepts a TCP connection in time.

    DNS lookups ignore socket timeouts, so the probe runs in a daemon thread
    whose join is the bound.
    """
    host, port = _probe_address(handle)
    outcome: list[BaseException | None] = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=connect, name="tfhub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise HubLoadError(offline_message(handle, f"{host}:{port} did not answer within "
                                                   f"{timeout:.0f} s"))
    if outcome[0] is not None:
        raise HubLoadError(offline_message(handle, f"cannot reach {host}:{port} ({outcome[0]})"))


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # hub's downloader calls urlopen without a timeout; bound each blocking op.
    # (Process-wide while it runs: loading happens once, before training.)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def offline_message(handle: str, reason: str) -> str:
    """How to make `handle` loadable without network (pre-cache or local path)."""
    digest = hashlib.sha1(handle.encode("utf8")).hexdigest()
    where = cache_dir()
    env = os.environ.get("TFHUB_CACHE_DIR")
    source = (f"TFHUB_CACHE_DIR={env}" if env else
              f"TFHUB_CACHE_DIR is not set, so hub uses {where}")
    return (
        f"cannot download TF-Hub module {handle!r}: {reason}. It is not in the local cache "
        f"either ({source}; looked for {os.path.join(where, digest)}). Fix one of:\n"
        f"  1. pass a local copy: --text_encoder=/path/to/module (a directory holding "
        f"saved_model.pb and variables/);\n"
        f"  2. pre-cache it: on a machine with network run\n"
        f"       TFHUB_CACHE_DIR=/some/dir python -c \"import tensorflow_hub as hub; "
        f"hub.resolve('{handle}')\"\n"
        f"     then copy /some/dir/{digest} to {os.path.join(where, digest)} here (or set "
        f"TFHUB_CACHE_DIR to a directory holding it). The cache layout is "
        f"$TFHUB_CACHE_DIR/<sha1 of the handle string>/saved_model.pb; sha1({handle!r}) = "
        f"{digest}. Equivalently, download {handle}?tf-hub-format=compressed and extract "
        f"the tarball into that directory.")


def load_module(handle: str, *, probe_timeout: float = PROBE_TIMEOUT_S) -> Any:
    """`tensorflow_hub.load(handle)` that fails fast and explains why.

    `handle`: a tfhub.dev/Kaggle URL, another http(s) URL of a tarball, or a
    directory (local, gs://, ...) holding a SavedModel. Remote handles already
    in the `TFHUB_CACHE_DIR` cache load without network. Raises HubLoadError.
    """
    if not isinstance(handle, str) or not handle.strip():
        raise HubLoadError(f"TF-Hub handle must be a non-empty string, got {handle!r}")
    if is_remote(handle):
        if not _is_cached(handle) or _uncompressed_format():
            _probe(handle, probe_timeout)
    elif handle.startswith("gs://"):
        _probe(handle, probe_timeout)  # read in place from GCS
    elif "://" not in handle and not os.path.isdir(handle):
        raise HubLoadError(
            f"text encoder {handle!r} is not 'builtin', not a URL and not an existing "
            f"directory; pass a TF-Hub handle (https://tfhub.dev/...), a Kaggle model URL or "
            f"the path of a SavedModel directory")
    import tensorflow_hub as hub

    with contextlib.suppress(ImportError):
        # BERT preprocessors use tensorflow_text ops; importing registers them.
        importlib.import_module("tensorflow_text")
    try:
        with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
            return hub.load(handle)
    except tf.errors.OpError as e:
        raise HubLoadError(f"cannot load TF-Hub module {handle!r}: {_hint(e.message)}") from e
    except (OSError, urllib.error.URLError) as e:  # URLError, timeouts, missing paths
        if is_remote(handle):
            raise HubLoadError(offline_message(handle, str(e))) from e
        raise HubLoadError(f"cannot load TF-Hub module {handle!r}: {_hint(str(e))}") from e
    except (ValueError, KeyError) as e:
        raise HubLoadError(f"{handle!r} is not a loadable TF-Hub SavedModel: "
                           f"{_hint(str(e))}") from e


def _hint(text: str) -> str:
    if "Op type not registered" in text:
        text += (" (the module needs ops from another package; BERT preprocessors need "
                 "`pip install tensorflow-text` matching the TF version)")
    return text


# --------------------------------------------------------------------------- #
# The layer.

def _signature(module: Any, handle: str) -> tuple[Callable[..., Any], Any]:
    """A non-callable (TF1-style) module's `default`/`serving_default` signature.

    Returns (text -> outputs callable, the signature's concrete function).
    """
    signatures = getattr(module, "signatures", {}) or {}
    for name in ("default", "serving_default"):
        if name in signatures:
            fn = signatures[name]
            _, kwargs = fn.structured_input_signature
            strings = [k for k, s in kwargs.items() if s.dtype == tf.string]
            if len(kwargs) != 1 or len(strings) != 1:
                raise HubLoadError(f"{handle!r}: signature {name!r} takes {sorted(kwargs)}; "
                                   f"expected one string input")
            key = strings[0]
            return (lambda text, fn=fn, key=key: fn(**{key: text})), fn
    raise HubLoadError(f"{handle!r} is neither callable nor has a 'default' signature "
                       f"(signatures: {sorted(signatures)})")


def _takes_training(fn: Any) -> bool:
    # A restored module's own signature is (*args, **kwargs); its __call__ has the real one.
    try:
        return "training" in inspect.signature(fn.__call__).parameters
    except (TypeError, ValueError):
        return False


def _module_variables(module: Any, fn: Any) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """(trainable, all) variables: the Reusable SavedModel attributes, else the call's."""
    if hasattr(module, "variables"):
        variables = list(module.variables)
        trainable = list(getattr(module, "trainable_variables", []))
        return trainable, variables
    trainable, seen, variables = [], set(), []
    concretes = getattr(fn, "concrete_functions", None) or [fn]
    for concrete in concretes:
        for v in getattr(concrete, "variables", ()):
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
                if v.trainable:
                    trainable.append(v)
    return trainable, variables


@keras.saving.register_keras_serializable(PACKAGE)
class HubTextEncoder(keras.Model):
    """`text` tf.string [B] -> float32 [B, output_dim] through a TF-Hub module.

    `handle`: URL or path of a module mapping strings to [B, D] (NNLM, USE) or,
    with `preprocessor`, of an encoder taking the preprocessor's dict (BERT).
    Dict outputs are reduced with `output_key` (e.g. "pooled_output").
    `output_dim` is read from the module; passing it (as from a saved config)
    checks the module still gives that size. `trainable=False` (default)
    freezes the module; `True` fine-tunes its trainable variables and needs a
    callable TF2 module that has some. Modules taking `training` get
    `training and trainable`.

    The weights are keras.Variables sharing the module's own tf.Variables.
    Checkpoints and `.keras` files hold them only when trainable (a frozen
    module is its handle; `get_config` records handle, preprocessor,
    output_key, trainable and output_dim); SavedModel exports always embed
    the whole module (and its vocabulary assets), so they take raw strings.
    """

    def __init__(self, handle: str, preprocessor: str = "", output_key: str = "pooled_output",
                 trainable: bool = False, output_dim: int | None = None, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = str(handle)
        self.preprocessor = str(preprocessor or "")
        self.output_key = str(output_key or "")
        self._module = load_module(self.handle)
        self._preprocessor = load_module(self.preprocessor) if self.preprocessor else None
        via_signature = not callable(self._module)
        fn, graph_fn = (_signature(self._module, self.handle) if via_signature
                        else (self._module, self._module.__call__))
        trainable_vars, all_vars = _module_variables(self._module, graph_fn)
        object.__setattr__(self, "_fn", fn)  # untracked: it may be the module itself
        # The module's own variables as Keras weights: a keras.Variable built
        # from a tf.Variable adopts it (TF backend), so the module reads what the
        # optimizer writes, and Keras' trainable/frozen bookkeeping applies.
        trainable_ids = {id(v) for v in trainable_vars}
        for v in all_vars:
            self._track_variable(keras.Variable(
                initializer=v, shape=v.shape, dtype=v.dtype, trainable=id(v) in trainable_ids,
                name=v.name.split(":")[0].replace("/", "_")))
        self._takes_training = not via_signature and _takes_training(self._module)
        if trainable and (via_signature or not trainable_vars):
            raise ValueError(
                f"text encoder {self.handle!r} cannot be fine-tuned: "
                + ("it is a TF1-style module called through a signature"
                   if via_signature else "it has no trainable variables")
                + "; use it frozen (drop --text_encoder_trainable)")
        dim = self._probe_output_dim()
        if output_dim is not None and int(output_dim) != dim:
            raise ValueError(f"text encoder {self.handle!r} now gives {dim}-d embeddings, but "
                             f"this model was built for output_dim={output_dim}; the handle "
                             f"points at a different module than when it was saved")
        self.output_dim = dim
        self.built = True

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            # A frozen module is fully described by its handle: keep gigabytes of
            # pre-trained weights out of every checkpoint. A fine-tuned one is saved
            # through its Keras weights (reachable like any layer's), not the module.
            children.pop("_preprocessor", None)
            children.pop("_module", None)
            if self.trainable:
                children.update({f"hub_weight_{i}": v for i, v in enumerate(self.weights)})
        return children

    def save_own_variables(self, store):
        # `.keras`: the module's weights only when fine-tuned; a frozen module is
        # reloaded from its handle.
        if self.trainable:
            super().save_own_variables(store)

    def load_own_variables(self, store):
        if list(store.keys()):
            super().load_own_variables(store)

    # -- the computation ---------------------------------------------------------------
    def _embed(self, text: tf.Tensor, training: bool) -> tf.Tensor:
        inputs = self._preprocessor(text) if self._preprocessor is not None else text
        out = self._fn(inputs, training=training) if self._takes_training else self._fn(inputs)
        if isinstance(out, dict):
            if self.output_key not in out:
                raise ValueError(f"text encoder {self.handle!r} returns a dict with keys "
                                 f"{sorted(out)}; set model.text_encoder.output_key to one "
                                 f"of them (now {self.output_key!r})")
            out = out[self.output_key]
        return tf.cast(out, tf.float32)

    def _probe_output_dim(self) -> int:
        # Restored functions cannot run in a cross-replica context (e.g. inside a
        # MirroredStrategy scope, where the task is built): run the probe per replica.
        strategy = tf.distribute.get_strategy()
        out = strategy.run(self._embed, args=(tf.constant([_PROBE_TEXT, "a"]), False))
        out = strategy.experimental_local_results(out)[0]
        if out.shape.rank != 2 or out.shape[0] != 2:
            raise ValueError(f"text encoder {self.handle!r} maps 2 strings to shape "
                             f"{out.shape.as_list()}; expected [2, D] (a sentence embedding; "
                             f"for dict outputs pick the pooled one with output_key)")
        return int(out.shape[1])

    def call(self, text, training=None):
        text = tf.convert_to_tensor(text, tf.string)
        if text.shape.rank is not None and text.shape.rank != 1:
            raise ValueError(f"text must be a tf.string vector [B], got shape {text.shape}")
        if not (self.trainable and self._takes_training) or training is None:
            out = self._embed(text, False)  # frozen modules always run in inference mode
        elif isinstance(training, tf.Tensor):
            out = tf.cond(training, lambda: self._embed(text, True),
                          lambda: self._embed(text, False))
        else:
            out = self._embed(text, bool(training))
        return tf.ensure_shape(out, [None, self.output_dim])

    def compute_output_spec(self, text, training=None):
        return keras.KerasTensor((text.shape[0], self.output_dim), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "preprocessor": self.preprocessor,
                "output_key": self.output_key, "output_dim": self.output_dim}

    @classmethod
    def from_config(cls, config):
        # Like keras.layers.TFSMLayer: deserialising loads and runs an external
        # SavedModel graph (named by the file), so it needs an explicit opt-in.
        if serialization_lib.in_safe_mode() is not False:
            raise ValueError(
                f"this model embeds the TF-Hub module {config.get('handle')!r}; loading it "
                f"runs that SavedModel's graph, which Keras' safe mode forbids. If you trust "
                f"the file, load it with keras.models.load_model(path, safe_mode=False) (or "
                f"call keras.config.enable_unsafe_deserialization()); or rebuild the run with "
                f"tfvideogen.training.load_task(model_dir)")
        return cls(**config)

