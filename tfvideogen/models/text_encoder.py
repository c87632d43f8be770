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


@keras.saving.register_keras_serializable(PACKAGE)
class TextEncoder(keras.Model):
    """`text` tf.string [B] -> float32 [B, output_dim].

    Token embedding -> bidirectional GRU (masked) -> dense projection.
    An empty caption (no tokens) raises InvalidArgumentError naming it.
    """

    def __init__(self, vocabulary: Sequence[str], max_tokens: int = 24,
                 embedding_dim: int = 64, hidden_dim: int = 64, output_dim: int = 128,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = [str(w) for w in vocabulary]
        if not self.vocabulary:
            raise ValueError("TextEncoder needs a non-empty vocabulary")
        if len(set(self.vocabulary)) != len(self.vocabulary) or "" in self.vocabulary:
            raise ValueError("TextEncoder vocabulary must hold distinct, non-empty words")
        self.max_tokens = max_tokens
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.lookup = keras.layers.StringLookup(vocabulary=self.vocabulary, mask_token="",
                                                num_oov_indices=1, name="lookup",
                                                dtype="string")
        self.embedding = keras.layers.Embedding(len(self.vocabulary) + 2, embedding_dim,
                                                mask_zero=True, name="embedding")
        self.rnn = keras.layers.Bidirectional(keras.layers.GRU(hidden_dim), name="bigru")
        self.projection = keras.layers.Dense(output_dim, name="projection", dtype="float32")

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary) + 2

    def build(self, input_shape=None):
        self.embedding.build((None, self.max_tokens))
        self.rnn.build((None, self.max_tokens, self.embedding_dim))
        self.projection.build((None, 2 * self.hidden_dim))
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
        h = self.rnn(x, mask=keras.ops.not_equal(ids, PAD_ID), training=training)
        return self.projection(h)

    def call(self, text, training=None):
        return self.embed_tokens(self.tokenize(text), training=training)

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary,
                "max_tokens": self.max_tokens, "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "output_dim": self.output_dim}


def normalize(text: tf.Tensor) -> tf.Tensor:
    """Lowercase, punctuation to spaces (the tokeniser's only rules)."""
    return tf.strings.regex_replace(tf.strings.lower(text), r"[^a-z0-9' ]+", " ")
