"""Every `attnbench …` command in a code block of the README or a docs page still parses (the
`--help` level: the command, its flags and their values exist), and `.ci/run` runs the README's
test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from attnbench.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
# inline code that is a whole command (`attnbench show r.jsonl`, not `attnbench show` alone nor
# one elided with …)
SPAN = re.compile(r"(?<!`)`((?:python3? -m )?attnbench \w+ [^`\n…]+)`(?!`)")
SHELL = {"", "bash", "sh", "shell", "console"}
OPTIONAL = re.compile(r"(?<=\s)\[[^\]]*\]")
ENV = re.compile(r"^\w+=")  # VAR=value before a command


def commands(text: str) -> list[str]:
    """The `attnbench` command lines in the shell code blocks and inline code of a page
    (continuations joined, comments, pipes, redirections and `&&` chains cut)."""
    found = []
    shell = [body for lang, body in BLOCK.findall(text) if lang in SHELL]
    for body in [*shell, "\n".join(SPAN.findall(BLOCK.sub("", text)))]:
        for line in body.replace("\\\n", " ").splitlines():
            line = OPTIONAL.sub("", line)  # a synopsis: `list [PATTERN] [--json]`
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
            lexer.whitespace_split, lexer.commenters = True, "#"
            try:
                tokens = list(lexer)
            except ValueError:  # not shell (a table, a traceback in a console block)
                continue
            segment: list[str] = []
            for token in [*tokens, ";"]:
                if token in ("|", "||", "&&", ";", "&") or token.startswith((">", "2>")):
                    found += _attnbench(segment)
                    segment = [] if not token.startswith((">", "2>")) else ["<redirected>"]
                elif segment[:1] != ["<redirected>"]:
                    segment.append(token)
    return found


def _attnbench(tokens: list[str]) -> list[str]:
    words = list(tokens)
    while words and (words[0] == "$" or ENV.match(words[0]) or words[0] in ("nice", "timeout")):
        words = (
            words[3:] if words[:2] == ["nice", "-n"] else words[2:] if words[0] == "timeout" else words[1:]
        )
    if words[:1] == ["attnbench"]:
        return [shlex.join(words[1:])]
    if words[:3] in (["python", "-m", "attnbench"], ["python3", "-m", "attnbench"]):
        return [shlex.join(words[3:])]
    return []


DOCUMENTED = [
    (page.relative_to(REPO).as_posix(), cmd) for page in PAGES for cmd in commands(page.read_text())
]


def test_commands_are_read_as_a_shell_would():
    page = (
        "Run `attnbench list --json`, `python -m attnbench show r.jsonl`,\n"
        "`attnbench show`, `attnbench run …`.\n"
        "```python\nattnbench.sweep()\n```\n"
        "```bash\n$ X=1 nice -n 19 attnbench run --suite ci -o r.jsonl && attnbench show r.jsonl | head #\n"
        "attnbench list [PATTERN] [--json]\nattnbench run a \\\n  --seq-len 1 > out.txt\n```\n"
    )
    in_blocks = ["run --suite ci -o r.jsonl", "show r.jsonl", "list", "run a --seq-len 1"]
    assert commands(page) == [*in_blocks, "list --json", "show r.jsonl"]


def test_a_command_with_a_flag_that_does_not_exist_fails_the_check(capsys):
    with pytest.raises(AssertionError, match="unrecognized arguments: --seqlen"):
        test_every_documented_command_parses("page.md", "run softmax.sdpa --seqlen 1024", capsys)


def test_the_pages_show_commands():
    assert len(DOCUMENTED) > 20 and any(p.startswith("docs/") for p, _ in DOCUMENTED)


@pytest.mark.parametrize("page, command", DOCUMENTED, ids=[f"{p}: {c[:60]}" for p, c in DOCUMENTED])
def test_every_documented_command_parses(page, command, capsys):
    try:
        build_parser().parse_args(shlex.split(command))
    except SystemExit as e:  # `--help` exits 0; a bad command or flag exits 2
        assert e.code == 0, f"{page}: `attnbench {command}`: {capsys.readouterr().err.strip()}"


def test_ci_runs_the_readme_test_command():
    """`.ci/run` installs what the README's test command installs (the torch pin and its extras;
    more extras are allowed: CI adds `ray` so that those tests run) and runs the same `pytest`."""
    readme = (REPO / "README.md").read_text()
    test_command = re.search(
        r"^python3 -m venv .* && pip install (torch\S*) -e '\.\[([\w,]+)\]' && (pytest)$", readme, re.M
    )
    assert test_command, "the README's test command (set-up line ending in pytest)"
    torch_pin, extras, pytest_call = test_command.groups()
    ci = (REPO / ".ci" / "run").read_text()
    install = re.search(
        rf"^pip install {re.escape(torch_pin)} -e '\.\[([\w,]+)\]'\n{pytest_call}\n", ci, re.M
    )
    assert install, f".ci/run: `pip install {torch_pin} -e '.[…]'` then `{pytest_call}`"
    assert set(extras.split(",")) <= set(install[1].split(","))
