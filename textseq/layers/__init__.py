"""Keras layers of textseq."""

from textseq.layers.attention import BahdanauAttention
from textseq.layers.dense import Dense
from textseq.layers.luong import LuongAttention

__all__ = ["BahdanauAttention", "Dense", "LuongAttention"]
