"""Data: sources of raw text examples, the vocabulary and in-graph tokenizer, tf.data pipelines."""
