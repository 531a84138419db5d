"""Keras layers of textseq."""

from textseq.layers.attention import BahdanauAttention

__all__ = ["BahdanauAttention"]
