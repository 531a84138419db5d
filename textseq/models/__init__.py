"""The encoder-decoder model family: Encoder, Decoder (with attention) and the Seq2Seq model."""

from textseq.models.carried import CarriedStates
from textseq.models.decoder import Decoder
from textseq.models.encoder import Encoder
from textseq.models.seq2seq import Seq2Seq, build_seq2seq

__all__ = ["CarriedStates", "Decoder", "Encoder", "Seq2Seq", "build_seq2seq"]
