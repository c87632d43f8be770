"""Tiny TF-Hub-format SavedModels, built inside the tests (no downloads).

They follow the Reusable SavedModel API that TF-Hub text modules use: a
callable root with `variables`, `trainable_variables` and
`regularization_losses` attributes.

* :func:`save_text_embedding` - like NNLM / Universal Sentence Encoder:
  `tf.string [B]` -> `float32 [B, dim]` (hashed words, sqrt-n averaged).
* :func:`save_bert_pair` - like a BERT preprocessor + encoder: the
  preprocessor maps `tf.string [B]` to `input_word_ids`, `input_mask`,
  `input_type_ids` (int32 [B, seq_length], vocabulary table from an asset
  file) and the encoder maps that dict (and `training`) to a dict with
  `pooled_output` [B, hidden], `sequence_output` [B, seq_length, hidden] and
  `default`. `layers`/`hidden` scale its cost (L=4, H=256 is BERT-mini sized
  feed-forward work; used by the train-step benchmark).
* :func:`save_signature_only` - a TF1-Hub-style module that is not callable
  and only has a `default` signature with a dict output.
"""

from __future__ import annotations

import os

import tensorflow as tf

BERT_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "an", "the", "is", "moving", "and",
              "red", "green", "blue", "yellow", "magenta", "cyan", "white", "square",
              "circle", "triangle", "left", "right", "up", "down", "digit", "zero", "one")


def _reusable(root: tf.train.Checkpoint, variables: list[tf.Variable]) -> tf.train.Checkpoint:
    root.variables = list(variables)
    root.trainable_variables = [v for v in variables if v.trainable]
    root.regularization_losses = []
    return root


def save_text_embedding(path: str, dim: int = 8, buckets: int = 64, seed: int = 0) -> str:
    """Writes a string -> [B, dim] embedding module to `path`; returns `path`."""
    init = tf.random.stateless_normal([buckets, dim], seed=[seed, 1])
    embeddings = tf.Variable(init, trainable=True, name="embeddings")
    # A frozen part too (e.g. a fixed scale), so trainable != all variables.
    scale = tf.Variable(tf.ones([dim]), trainable=False, name="scale")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(text):
        words = tf.strings.split(tf.strings.lower(text))
        ids = tf.strings.to_hash_bucket_fast(words, buckets)
        vectors = tf.gather(embeddings, ids)  # ragged [B, (words), dim]
        count = tf.cast(tf.maximum(words.row_lengths(), 1), tf.float32)[:, None]
        return tf.reduce_sum(vectors, axis=1) / tf.sqrt(count) * scale

    root = _reusable(tf.train.Checkpoint(), [embeddings, scale])
    root.__call__ = embed
    tf.saved_model.save(root, path)
    return path


def save_bert_pair(preprocessor_path: str, encoder_path: str, hidden: int = 8,
                   seq_length: int = 16, layers: int = 1, seed: int = 0) -> tuple[str, str]:
    """Writes a BERT-style preprocessor and encoder; returns their paths."""
    _save_preprocessor(preprocessor_path, seq_length)
    _save_encoder(encoder_path, len(BERT_VOCAB), hidden, seq_length, layers, seed)
    return preprocessor_path, encoder_path


def _save_preprocessor(path: str, seq_length: int) -> None:
    vocab_dir = os.path.join(os.path.dirname(os.path.abspath(path)),
                             os.path.basename(path) + "_vocab")
    os.makedirs(vocab_dir, exist_ok=True)
    vocab_file = os.path.join(vocab_dir, "vocab.txt")
    with open(vocab_file, "w") as f:
        f.write("\n".join(BERT_VOCAB) + "\n")
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
        default_value=BERT_VOCAB.index("[UNK]"))
    cls_id, sep_id = BERT_VOCAB.index("[CLS]"), BERT_VOCAB.index("[SEP]")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def preprocess(text):
        words = tf.strings.split(tf.strings.regex_replace(tf.strings.lower(text), "[^a-z ]", " "))
        ids = tf.cast(table.lookup(words), tf.int32)[:, : seq_length - 2]
        batch = tf.shape(text)[0]
        ids = tf.concat([tf.fill([batch, 1], cls_id), ids, tf.fill([batch, 1], sep_id)], axis=1)
        word_ids = ids.to_tensor(default_value=0, shape=[None, seq_length])
        return {"input_word_ids": word_ids,
                "input_mask": tf.cast(word_ids > 0, tf.int32),
                "input_type_ids": tf.zeros_like(word_ids)}

    root = _reusable(tf.train.Checkpoint(), [])
    root.table = table
    root.__call__ = preprocess
    tf.saved_model.save(root, path)


def _save_encoder(path: str, vocab_size: int, hidden: int, seq_length: int, layers: int,
                  seed: int) -> None:
    def normal(shape, i, scale=0.5):
        return tf.random.stateless_normal(shape, seed=[seed, i]) * scale

    word = tf.Variable(normal([vocab_size, hidden], 1), name="word_embeddings")
    types = tf.Variable(normal([2, hidden], 2), name="type_embeddings")
    position = tf.Variable(normal([seq_length, hidden], 3), name="position_embeddings")
    blocks = [(tf.Variable(normal([hidden, 4 * hidden], 10 + i, hidden**-0.5),
                           name=f"layer_{i}/ffn_in"),
               tf.Variable(normal([4 * hidden, hidden], 100 + i, (4 * hidden)**-0.5),
                           name=f"layer_{i}/ffn_out"))
              for i in range(layers)]
    pooler = tf.Variable(normal([hidden, hidden], 4, hidden**-0.5), name="pooler/kernel")
    # Like BERT's: a non-trainable buffer next to the trainable weights.
    mask_value = tf.Variable(0.0, trainable=False, name="mask_value")
    int_spec = tf.TensorSpec([None, None], tf.int32)
    spec = {"input_word_ids": int_spec, "input_mask": int_spec, "input_type_ids": int_spec}

    @tf.function
    def encode(inputs, training=False):
        ids, mask = inputs["input_word_ids"], inputs["input_mask"]
        length = tf.shape(ids)[1]
        x = (tf.gather(word, ids) + tf.gather(types, inputs["input_type_ids"])
             + position[None, :length])
        m = tf.cast(mask, tf.float32)[:, :, None]
        for w_in, w_out in blocks:
            x = x + tf.einsum("bsf,fh->bsh", tf.nn.gelu(tf.einsum("bsh,hf->bsf", x, w_in)),
                              w_out)
        x = x * m + mask_value * (1.0 - m)
        if training:
            # Observable (deterministic) train-mode difference, like dropout's rescale.
            x = x * 0.9
        pooled = tf.tanh(tf.matmul(x[:, 0], pooler))
        return {"pooled_output": pooled, "sequence_output": x, "default": pooled}

    for training in (False, True):
        encode.get_concrete_function(spec, training=training)
    variables = ([word, types, position] + [w for block in blocks for w in block]
                 + [pooler, mask_value])
    root = _reusable(tf.train.Checkpoint(), variables)
    root.__call__ = encode
    tf.saved_model.save(root, path)


def save_signature_only(path: str, dim: int = 6) -> str:
    """A non-callable module with only a `default` signature (TF1 Hub style)."""
    module = tf.Module()
    module.table = tf.Variable(tf.random.stateless_normal([16, dim], seed=[3, 3]), name="table")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def default(sentences):
        ids = tf.strings.to_hash_bucket_fast(sentences, 16)
        return {"default": tf.gather(module.table, ids), "ids": ids}

    tf.saved_model.save(module, path, signatures={"default": default})
    return path
