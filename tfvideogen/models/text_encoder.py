"""The built-in caption encoder: raw strings in, a fixed-size vector out.

Everything runs in the TF graph (lowercase, strip punctuation, split,
vocabulary lookup with an OOV bucket), so a SavedModel built from it takes raw
strings. Token ids are a public intermediate (`tokenize` / `embed_tokens`) so
runtimes without string ops (TFLite) can tokenise outside the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfvideogen.models.layers import PACKAGE

PAD_ID = 0  # the empty token; ids >= 2 are vocabulary words, 1 is OOV
OOV_ID = 1
POOLING = ("gru", "mean")


@keras.saving.register_keras_serializable(PACKAGE)
class TextEncoder(keras.Model):
    """`text` tf.string [B] -> float32 [B, output_dim].

    Token embedding -> bidirectional GRU (masked) -> dense projection.
    `pooling="mean"` replaces the GRU by the masked mean of the word embeddings:
    a caption's vector is then a sum of its words' (order-blind), so an unseen
    combination of seen words gets an embedding built from the same parts.
    An empty caption (no tokens) raises InvalidArgumentError naming it.
    """

    def __init__(self, vocabulary: Sequence[str], max_tokens: int = 24,
                 embedding_dim: int = 64, hidden_dim: int = 64, output_dim: int = 128,
                 pooling: str = "gru", **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = [str(w) for w in vocabulary]
        if not self.vocabulary:
            raise ValueError("TextEncoder needs a non-empty vocabulary")
        if len(set(self.vocabulary)) != len(self.vocabulary) or "" in self.vocabulary:
            raise ValueError("TextEncoder vocabulary must hold distinct, non-empty words")
        if pooling not in POOLING:
            raise ValueError(f"pooling={pooling!r}; valid: {', '.join(POOLING)}")
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.lookup = keras.layers.StringLookup(vocabulary=self.vocabulary, mask_token="",
                                                num_oov_indices=1, name="lookup",
                                                dtype="string")
        self.embedding = keras.layers.Embedding(len(self.vocabulary) + 2, embedding_dim,
                                                mask_zero=True, name="embedding")
        if pooling == "gru":
            self.rnn = keras.layers.Bidirectional(keras.layers.GRU(hidden_dim), name="bigru")
        self.projection = keras.layers.Dense(output_dim, name="projection", dtype="float32")

    @property
    def _pooled_dim(self) -> int:
        return 2 * self.hidden_dim if self.pooling == "gru" else self.embedding_dim

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary) + 2

    def build(self, input_shape=None):
        self.embedding.build((None, self.max_tokens))
        if self.pooling == "gru":
            self.rnn.build((None, self.max_tokens, self.embedding_dim))
        self.projection.build((None, self._pooled_dim))
        self.built = True

    def tokenize(self, text: tf.Tensor) -> tf.Tensor:
        """tf.string [B] -> int64 ids [B, max_tokens] (0 = padding, 1 = OOV)."""
        text = tf.convert_to_tensor(text, tf.string)
        words = tf.strings.split(normalize(text))
        count = words.row_lengths()
        tf.debugging.assert_greater(
            count, tf.zeros_like(count),
            message="empty caption: every caption needs at least one word")
        dense = words.to_tensor(default_value="", shape=[None, self.max_tokens])
        return tf.cast(self.lookup(dense), tf.int64)

    def embed_tokens(self, ids: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """int ids [B, max_tokens] -> float32 [B, output_dim]."""
        x = self.embedding(ids)
        mask = keras.ops.not_equal(ids, PAD_ID)
        if self.pooling == "gru":
            return self.projection(self.rnn(x, mask=mask, training=training))
        weights = keras.ops.cast(mask, x.dtype)[..., None]
        count = keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)
        return self.projection(keras.ops.sum(x * weights, axis=1) / count)

    def call(self, text, training=None):
        return self.embed_tokens(self.tokenize(text), training=training)

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary,
                "max_tokens": self.max_tokens, "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "output_dim": self.output_dim,
                "pooling": self.pooling}


def normalize(text: tf.Tensor) -> tf.Tensor:
    """Lowercase, punctuation to spaces (the tokeniser's only rules)."""
    return tf.strings.regex_replace(tf.strings.lower(text), r"[^a-z0-9' ]+", " ")
