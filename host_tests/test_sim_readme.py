"""The README's simulator examples, run: every fenced block that starts with
`$ tools/sim ... --keys "..."` must show what a real run shows.

A block's lines after the command are the output; a line "..." stands for lines left out
(the output must hold the pieces in order, each piece whole). What differs from run to run
is masked on both sides: the terminal ID, the date on a slip, the free memory on the status
screen (it depends on the length of the state folder's path). Every other `tools/sim ...
--keys "..."` in the README's text must run and exit 0.
"""

import os
import re
import shlex
import subprocess
import sys

from test_sim import ROOT, state_folder

MASKS = [
    (re.compile(r"SIM[0-9A-F]{6}"), "SIM??????"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d"), "YYYY-MM-DD hh:mm"),
    (re.compile(r"\|Free mem +\d+\|"), "|Free mem ?????|"),
]


def mask(line):
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def readme_examples():
    """[(command words, [expected pieces] or None)] from README.md."""
    with open(os.path.join(ROOT, "README.md")) as source:
        text = source.read()
    examples = []
    in_blocks = set()
    for block in re.findall(r"^```\n(.*?)^```", text, re.S | re.M):
        lines = block.splitlines()
        if not lines or not lines[0].startswith("$ tools/sim ") or "--keys" not in lines[0]:
            continue
        pieces = [[]]
        for line in lines[1:]:
            if line == "...":
                pieces.append([])
            else:
                pieces[-1].append(mask(line))
        command = lines[0][2:]
        in_blocks.add(command)
        examples.append((command, [piece for piece in pieces if piece]))
    for command in re.findall(r"`(tools/sim [^`]*--keys \"[^\"`]*\"[^`]*)`", text):
        if command not in in_blocks:
            examples.append((command, None))
    return examples


def run_example(command, name):
    words = shlex.split(command)
    assert words[0] == "tools/sim"
    return subprocess.run(
        [sys.executable, "-m", "tools.host.sim", "--state", state_folder(name), *words[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def find_in_order(lines, pieces):
    """The first piece that is not found whole after the one before it, or None."""
    at = 0
    for piece in pieces:
        size = len(piece)
        while at + size <= len(lines) and lines[at : at + size] != piece:
            at += 1
        if at + size > len(lines):
            return piece
        at += size
    return None


def test_the_readme_has_simulator_examples():
    examples = readme_examples()
    assert sum(1 for _, pieces in examples if pieces) >= 2


def test_every_readme_example_shows_what_a_real_run_shows():
    for number, (command, pieces) in enumerate(readme_examples()):
        result = run_example(command, "readme%d" % number)
        assert result.returncode == 0, "%s:\n%s%s" % (command, result.stdout, result.stderr)
        if pieces is None:
            continue
        lines = [mask(line) for line in result.stdout.splitlines()]
        missing = find_in_order(lines, pieces)
        assert missing is None, "%s: the README shows\n%s\nbut the run printed\n%s" % (
            command,
            "\n".join(missing),
            result.stdout,
        )
