"""tfvideogen: text-conditioned video GANs in TensorFlow/Keras, from training to serving."""

__version__ = "0.1.0"
