"""The two kinds of failure attnbench distinguishes.

`UserError` is something the person at the keyboard can fix (a bad suite file, an unknown
variant): the CLI prints its message as one line and exits 2. `Unsupported` is raised by a
variant for a case it cannot run (a dtype, a device, a backend torch lacks here): the runner
records the case as `unsupported` with the reason instead of failing.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; shown as one line, exit code 2."""


class Unsupported(Exception):
    """A variant cannot run this case; recorded as status `unsupported` with the message."""
