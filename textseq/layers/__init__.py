"""Keras layers of textseq."""

from textseq.layers.attention import BahdanauAttention
from textseq.layers.dense import Dense

__all__ = ["BahdanauAttention", "Dense"]
