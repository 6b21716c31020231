"""The results store: JSON lines, one self-describing record per case."""

from attnbench.results.frame import load_results
from attnbench.results.store import STATUSES, ResultStore, make_record, read_records

__all__ = ["STATUSES", "ResultStore", "load_results", "make_record", "read_records"]
