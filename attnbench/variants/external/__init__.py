"""Adapters for the best public implementations, benchmarked beside ours in the same run.
Each is available only where its package (and usually a GPU) is."""
