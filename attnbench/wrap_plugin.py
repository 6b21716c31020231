"""Imported as a plugin by the subprocess workers of `attnbench.bench`: registers the
unregistered functions and modules the parent named in ATTNBENCH_TARGETS (see `attnbench.wrap`)."""

from attnbench.wrap import register_from_env

register_from_env()
