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
POOLING = ("gru", "mean", "routed")


@keras.saving.register_keras_serializable(PACKAGE)
class TextEncoder(keras.Model):
    """`text` tf.string [B] -> float32 [B, output_dim].

    Token embedding -> bidirectional GRU (masked) -> dense projection.
    `pooling="mean"` replaces the GRU by the masked mean of the word embeddings:
    a caption's vector is then a sum of its words' (order-blind), so an unseen
    combination of seen words gets an embedding built from the same parts.
    `pooling="routed"`: each word is split between `heads` heads by a softmax
    over the heads of its own (context-free) logits, each head sums its share of
    the words and projects it to `output_dim / heads` values, and the output is
    the heads side by side ([head 0 | head 1 | ...]); a consumer reads one head
    per path (`LayeredGenerator`: head 0 the appearance, head 1 the motion).
    `route_words` (routed, 2 heads): the routing is fixed instead of learned -
    these words go wholly to head 1, every other word to head 0 (a constant
    [vocab, 2] table: a frozen Embedding named `routing`, so exports carry it).
    Only fixed routes keep a word out of a path: a learned share scales a word's
    vector but does not hide it, and measured shares stayed at 0.5 (README#Quality).
    An empty caption (no tokens) raises InvalidArgumentError naming it.
    """

    def __init__(self, vocabulary: Sequence[str], max_tokens: int = 24,
                 embedding_dim: int = 64, hidden_dim: int = 64, output_dim: int = 128,
                 pooling: str = "gru", heads: int = 2, route_words: Sequence[str] = (),
                 **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = [str(w) for w in vocabulary]
        if not self.vocabulary:
            raise ValueError("TextEncoder needs a non-empty vocabulary")
        if len(set(self.vocabulary)) != len(self.vocabulary) or "" in self.vocabulary:
            raise ValueError("TextEncoder vocabulary must hold distinct, non-empty words")
        if pooling not in POOLING:
            raise ValueError(f"pooling={pooling!r}; valid: {', '.join(POOLING)}")
        if pooling == "routed" and (heads < 1 or output_dim % heads):
            raise ValueError(f"routed pooling: output_dim={output_dim} must be a multiple of "
                             f"heads={heads} >= 1")
        self.route_words = sorted(str(w) for w in route_words)
        if self.route_words and (pooling != "routed" or heads != 2):
            raise ValueError("route_words needs pooling='routed' with heads=2")
        if unknown := sorted(set(self.route_words) - set(self.vocabulary)):
            raise ValueError(f"route_words not in the vocabulary: {', '.join(unknown)}")
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.heads = heads
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
        if pooling == "routed":
            # float32: the routing softmax and the per-head sums stay exact under
            # mixed precision (a [B, L, E] tensor, negligible cost).
            if self.route_words:
                # Row = token id (0 padding, 1 OOV, then the vocabulary): its heads.
                table = [[1.0, 0.0]] * 2 + [[0.0, 1.0] if w in self.route_words else [1.0, 0.0]
                                            for w in self.vocabulary]
                self.routing = keras.layers.Embedding(
                    self.vocab_size, 2, embeddings_initializer=keras.initializers.Constant(table),
                    trainable=False, name="routing", dtype="float32")
            else:
                self.routing = keras.layers.Dense(heads, name="routing", dtype="float32")
            self.projection = keras.layers.EinsumDense(
                "bhe,hed->bhd", output_shape=(heads, output_dim // heads), bias_axes="hd",
                name="projection", dtype="float32")
        else:
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
        if self.pooling == "routed":
            if self.route_words:
                self.routing.build((None, self.max_tokens))
            else:
                self.routing.build((None, self.max_tokens, self.embedding_dim))
            self.projection.build((None, self.heads, self.embedding_dim))
        else:
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
        if self.pooling == "mean":
            return self.projection(keras.ops.sum(x * weights, axis=1) / count)
        x = keras.ops.cast(x, "float32")
        share = self._shares(ids, x) * keras.ops.cast(weights, "float32")
        pooled = keras.ops.einsum("blh,ble->bhe", share, x) / keras.ops.cast(
            count, "float32")[:, :, None]  # [B, heads, E]
        return keras.ops.reshape(self.projection(pooled), [-1, self.output_dim])

    def routing_shares(self, ids: tf.Tensor) -> tf.Tensor:
        """int ids [B, max_tokens] -> float32 [B, max_tokens, heads]: each word's
        split between the heads (rows sum to 1; padding 0). `pooling="routed"` only."""
        if self.pooling != "routed":
            raise ValueError(f"routing_shares needs pooling='routed', not {self.pooling!r}")
        if not self.built:
            self.build()
        x = keras.ops.cast(self.embedding(ids), "float32")
        mask = keras.ops.cast(keras.ops.not_equal(ids, PAD_ID), "float32")[..., None]
        return self._shares(ids, x) * mask

    def _shares(self, ids, x):
        if self.route_words:
            return self.routing(ids)
        return keras.ops.softmax(self.routing(x), axis=-1)

    def call(self, text, training=None):
        return self.embed_tokens(self.tokenize(text), training=training)

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary,
                "max_tokens": self.max_tokens, "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "output_dim": self.output_dim,
                "pooling": self.pooling, "heads": self.heads, "route_words": self.route_words}


def normalize(text: tf.Tensor) -> tf.Tensor:
    """Lowercase, punctuation to spaces (the tokeniser's only rules)."""
    return tf.strings.regex_replace(tf.strings.lower(text), r"[^a-z0-9' ]+", " ")
