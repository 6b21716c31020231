"""Running cases: one case end to end (execute), executors that isolate it (inline,
subprocess), and the sweep that drives them and writes the results store."""
