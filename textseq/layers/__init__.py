"""Keras layers of textseq."""

from textseq.layers.attention import BahdanauAttention
from textseq.layers.dense import Dense, Logits
from textseq.layers.luong import LuongAttention

__all__ = ["BahdanauAttention", "Dense", "Logits", "LuongAttention"]
