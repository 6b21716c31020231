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


def is_oom(e: BaseException) -> bool:
    """A failure to allocate memory, on any device."""
    import torch  # here, so that importing the errors stays light

    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(e)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def one_line(e: BaseException) -> str:
    """An exception as one line of a result: its type and the first line of its message."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:500]


def did_you_mean(word: str, options) -> str:
    """` (did you mean 'x'?)` for the closest of `options`, or "" when none is close."""
    import difflib

    hint = difflib.get_close_matches(word, [str(o) for o in options], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def check_known(owner: str, given, known) -> None:
    """A UserError naming the first of `given` that is not in `known` (parameters of a
    variant or a task), with the closest name and the full list."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        tip = did_you_mean(unknown[0], known)
        raise UserError(f"{owner} has no parameter {unknown[0]!r}{tip} (its parameters: {names})")
