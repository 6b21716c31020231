"""Sparse softmax attention: each query attends to a pattern of keys (a local window so far),
computed without the N×N score matrix (blocked PyTorch, FlexAttention block masks), with a
dense-mask SDPA path beside them to show what the sparsity saves."""
