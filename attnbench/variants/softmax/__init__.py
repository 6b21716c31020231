"""Exact softmax attention: the naive reference, SDPA pinned to each backend, FlexAttention."""
