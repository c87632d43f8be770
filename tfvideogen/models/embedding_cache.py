"""Training-time cache of a frozen text encoder's caption embeddings.

A frozen encoder maps a caption to the same vector at every step, so the
train step looks captions up in a hash table instead of running the encoder
(a TF-Hub BERT/USE forward can cost more than the GAN step). The table is
pre-filled from the dataset's known captions; a caption it has not seen is
embedded by the encoder inside the step and inserted, so results never depend
on the pre-fill. The cache wraps `task.text_encoder` only inside the train
step: it is not part of checkpoints, `.keras` files or exports.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from absl import logging

from tfvideogen.models.layers import PACKAGE

if TYPE_CHECKING:
    from tfvideogen.data.registry import BuiltinDataset

# Captions embedded before training at most (the rest: on first sight).
PREFILL_LIMIT = 200_000


def is_frozen(encoder: keras.Layer) -> bool:
    """True when `encoder` trains no variables (so its output per caption is fixed)."""
    return not encoder.trainable_variables


@keras.saving.register_keras_serializable(PACKAGE)
class EmbeddingCache(keras.layers.Layer):
    """`text` tf.string [B] -> float32 [B, output_dim], memoised per caption.

    `encoder` must be frozen and deterministic in inference mode (it is always
    called with `training=False`). `embedded` counts the captions the encoder
    has actually embedded (pre-fill plus misses): with a full pre-fill it
    stays constant through training. A NaN row marks a miss, so an encoder
    that outputs NaN is simply never cached.
    """

    def __init__(self, encoder: keras.Layer, **kwargs):
        super().__init__(**kwargs)
        if not is_frozen(encoder):
            raise ValueError(f"EmbeddingCache needs a frozen encoder; {encoder.name!r} has "
                             f"{len(encoder.trainable_variables)} trainable variables")
        self.encoder = encoder
        self.output_dim = int(encoder.output_dim)
        self._table = tf.lookup.experimental.MutableHashTable(
            tf.string, tf.float32, default_value=tf.fill([self.output_dim], float("nan")),
            name="caption_embeddings")
        self.embedded = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                        trainable=False, name="embedded")
        self.built = True

    @property
    def size(self) -> int:
        """Number of cached captions."""
        return int(self._table.size())

    def call(self, text, training=None):
        text = tf.convert_to_tensor(text, tf.string)
        if text.shape.rank is not None and text.shape.rank != 1:
            raise ValueError(f"text must be a tf.string vector [B], got shape {text.shape}")
        # (Table lookups lose the static shape in graphs; boolean_mask needs it.)
        found = tf.ensure_shape(self._table.lookup(text), [None, self.output_dim])
        missing = tf.reduce_any(tf.math.is_nan(found), axis=-1)

        def fill():
            new = tf.unique(tf.boolean_mask(text, missing)).y
            emb = tf.cast(self.encoder(new, training=False), tf.float32)
            with tf.control_dependencies([self._table.insert(new, emb)]):
                count = self.embedded.assign_add(tf.size(new, out_type=tf.int64))
            with tf.control_dependencies([count]):
                return self._table.lookup(text)

        out = tf.cond(tf.reduce_any(missing), fill, lambda: found)
        return tf.ensure_shape(out, [None, self.output_dim])

    def prefill(self, captions: Iterable[str], batch_size: int = 256) -> int:
        """Embeds the not yet cached `captions` (in batches); returns how many were added."""
        todo = [c for c in dict.fromkeys(captions) if isinstance(c, str | bytes) and c]
        if not todo:
            return 0
        before = self.size
        for i in range(0, len(todo), batch_size):
            self(tf.constant(todo[i:i + batch_size]))
        return self.size - before

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def known_captions(dataset: BuiltinDataset) -> list[str]:
    """Every caption of every split of a built-in dataset ([] if it cannot list them)."""
    captions: list[str] = []
    for split in getattr(dataset, "splits", ()):
        try:
            captions.extend(dataset.captions(split))
        except (NotImplementedError, ValueError):
            continue  # open-vocabulary readers: misses are filled during training
    return captions


def for_training(encoder: keras.Layer, captions: Sequence[str],
                 prefill_limit: int = PREFILL_LIMIT) -> keras.Layer:
    """The encoder the train step should call: cached (and pre-filled) when frozen.

    At most `prefill_limit` distinct captions are embedded up front (memory:
    limit x output_dim floats); the rest are embedded on first sight. Call it
    outside any strategy scope: the table and counter are then one shared
    (host) copy that every replica reads and fills, not per-replica mirrors.
    """
    if not is_frozen(encoder):
        return encoder
    cache = EmbeddingCache(encoder, name=f"{encoder.name}_cache")
    start = time.perf_counter()
    added = cache.prefill(list(dict.fromkeys(captions))[:prefill_limit])
    logging.info("cached %d caption embeddings of the frozen %s in %.1f s",
                 added, encoder.name, time.perf_counter() - start)
    return cache
