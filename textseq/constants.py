"""The reserved token ids and their spellings, shared by the vocabulary, the data pipelines, the
models and decoding (which need nothing else from `textseq.data`).

>>> PAD, UNK, BOS, EOS
(0, 1, 2, 3)
>>> RESERVED[EOS]
'</s>'
"""

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # padding (masked everywhere), unknown, begin and end of sequence
RESERVED = ("<pad>", "<unk>", "<s>", "</s>")  # the first four entries of every vocabulary, in id order
EXPORT_FORMATS = ("saved_model", "litert")  # textseq export --format: the SavedModel, or a language model's LiteRT step
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")  # textseq export --format litert --quantize
