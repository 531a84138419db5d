"""TensorFlow's speed path for textseq's models: the same results as the pure Keras layers, loss and
optimizers, computed faster on CPUs and TPUs.

- `recurrent`: LSTM and GRU loops with every matrix product that does not depend on the previous
  step hoisted out of the loop, forward and backward (under XLA for batches of one shape);
- `attention`: additive attention scores and their gradients fused under XLA;
- `loss`: the token cross-entropy with its gradient written out;
- `optimizers`: Keras' optimizers with exact, sparse gradient clipping;
- `xla`: the helpers they share.
"""
