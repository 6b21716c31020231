"""Low-rank / factorised approximations of softmax attention: Linformer and Nyströmformer.
Their oracle is exact softmax attention, so `rel_err` in their results is the approximation
error, reported beside their speed."""
