"""The Decoder's one-token-at-a-time half: a decoding step, the states it carries, and input feeding.

Input feeding (Luong et al., 2015) gives each step the previous step's attentional vector beside its
token. Every step then depends on the attention of the one before, so training cannot run the first
recurrent layer over the whole target at once: `input_fed` steps the stack, attention and `combine`
through time (`keras.ops.scan`), as decoding does one call at a time.
"""

from __future__ import annotations

from keras import ops


class Stepping:
    """Mixed into `Decoder` (whose layers it runs): `step` for decoding, `start_states` and
    `state_sizes` for the states it carries, `input_fed` for training with input feeding."""

    def step_layers(self, x, layers, encoder_outputs, projected_keys, encoder_mask, training=False):
        """One step of the stack, attention and `combine` for inputs `[batch, features]`:
        (new states per layer, attentional vector `[batch, units]`, weights `[batch, source_steps]`)."""
        new_layers = []
        for rnn, layer_states in zip(self.rnns, layers):
            x, layer_states = rnn.cell(x, list(layer_states), training=training)
            new_layers.append(list(layer_states) if isinstance(layer_states, (list, tuple)) else [layer_states])
            x = self.drop(x, training=training)
        query = ops.expand_dims(x, 1)
        weights = self.attention.attention_weights(query, projected_keys, encoder_mask, training)
        attentional = self._attentional(query, ops.matmul(weights, encoder_outputs))
        return new_layers, attentional[:, 0], weights[:, 0]

    def step(self, token_ids, states, encoder_outputs, projected_keys, encoder_mask):
        """One decoding step: token ids `[batch]` -> logits `[batch, vocab]`, new states, weights `[batch, source_steps]`.

        `projected_keys` is `attention.project_keys(encoder_outputs)`, computed once per source.
        """
        x = self.embedding(token_ids)
        layers = states[:self.num_layers]
        if self.input_feeding:
            x = ops.concatenate([x, ops.cast(states[-1][0], x.dtype)], axis=-1)
        new_layers, attentional, weights = self.step_layers(x, layers, encoder_outputs, projected_keys, encoder_mask)
        new_states = [*new_layers, [attentional]] if self.input_feeding else new_layers
        return self.logits(attentional), new_states, weights

    def start_states(self, states):
        """The decoder's initial states from per-layer states of its size (what the bridge gives):
        with input feeding, a zero attentional vector joins them."""
        if not self.input_feeding:
            return states
        first = states[0][0]
        return [*states, [ops.zeros((ops.shape(first)[0], self.units), first.dtype)]]

    def state_sizes(self) -> list[list[int]]:
        """The size of every state, in the structure `step` takes: per layer `[units, units]` (LSTM)
        or `[units]` (GRU), then `[units]` with input feeding.

        >>> from textseq.layers import BahdanauAttention
        >>> from textseq.models import Decoder
        >>> Decoder(10, 4, 6, BahdanauAttention(5), input_feeding=True).state_sizes()
        [[6, 6], [6]]
        """
        per_layer = 2 if self.cell == "lstm" else 1
        return [[self.units] * per_layer for _ in range(self.num_layers)] + ([[self.units]] if self.input_feeding else [])

    def input_fed(self, x, mask, states, encoder_outputs, encoder_mask, training):
        """A `Decoder`'s stack, attention and `combine` over embedded targets `x` `[batch, steps, features]`,
        each step reading the previous step's attentional vector: (attentional vectors `[batch, steps,
        units]`, attention weights `[batch, steps, source_steps]`, final states as `start_states` gives them).
        """
        states = self.start_states(states) if len(states) == self.num_layers else states
        projected_keys = self.attention.project_keys(encoder_outputs)
        no_weights = ops.zeros((ops.shape(x)[0], ops.shape(encoder_outputs)[1]), self.compute_dtype)

        def step(carry, inputs):
            states, _ = carry
            x_t, keep = inputs[:, :-1], inputs[:, -1:] > 0
            *layers, (feed,) = states
            new_layers, attentional, weights = self.step_layers(
                ops.concatenate([x_t, feed], axis=-1), layers, encoder_outputs, projected_keys, encoder_mask, training)
            # A padded step leaves every state as it was, as the fused layers do.
            new_states = [[ops.where(keep, new, old) for new, old in zip(new_layer, layer)]
                          for new_layer, layer in zip([*new_layers, [attentional]], states)]
            return (new_states, weights), (new_states, weights)  # Keras' TensorFlow scan wants outputs like the carry

        def time_major(tensor):
            return ops.moveaxis(tensor, 1, 0)

        # One tensor to scan, the mask as its last feature: Keras' TensorFlow scan fails on several when
        # the number of steps is not static.
        steps = ops.concatenate([x, ops.cast(ops.expand_dims(mask, -1), x.dtype)], axis=-1)
        (final_states, _), (every_state, weights) = ops.scan(step, (states, no_weights), time_major(steps))
        attentional = every_state[-1][0]  # the attentional vector of every step, time-major
        return time_major(attentional), time_major(weights), final_states
