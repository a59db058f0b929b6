"""Final answers in model text: where a solution states one, and whether two answers are equal.

Instruct models state answers in many ways: `#### 18`, `\\boxed{18}`, `**Answer:** $18`,
`The final answer is $\\boxed{18}$`, `The answer is 1,234.`. Each of these is a *statement*; a task reads
its kind of value (a number, a LaTeX expression) out of each statement's text. The FIRST statement that
holds a value is the answer: models often go on after answering (an invented next question with its own
`####` line), and a search stops a solution at its first statement (`is_terminal`), so reading any later
one would grade text the search never keeps.

Answers are compared with math-verify under a timeout, since its symbolic comparison can be slow on
adversarial text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from math_verify import parse, verify

CHECK_TIMEOUT_S = 5

BOXED = re.compile(r"\\(?:boxed|fbox)\b\s*")
HASHES = re.compile(r"####")
# "Answer:", "**Answer:**", "answer is", "The final answer is", "Final Answer:" (a colon or "is" is required,
# so "answer three questions" states nothing).
PHRASE = re.compile(r"(?i)\b(?:final\s+)?answer(?:\s*\*\*)?\s*(?::|\bis\b)")
# What may stand between a statement's marker and its value: blanks, bold, colons, a repeated phrase
# ("Final Answer: The final answer is $18$").
LEAD = re.compile(r"(?i)^(?:\s+|\*\*|:|(?:the\s+)?(?:final\s+)?answer(?:\s*\*\*)?\s*(?::|\bis\b))+")


@dataclass(frozen=True)
class Statement:
    """Where a solution states a final answer: `kind` is "hashes", "boxed" or "phrase"; `text` is the content
    of the box, or for the other kinds the rest of the line after the marker (see `rest_of_line`)."""

    start: int
    kind: str
    text: str


def braced(text: str, open_index: int) -> str | None:
    """The content of the brace group opening at `open_index` (nested and escaped braces respected), or
    None when it never closes."""
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # `\{` and `\}` are literal braces
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
        index += 1
    return None


def boxed(text: str) -> list[tuple[int, str]]:
    """Every closed `\\boxed{...}` / `\\fbox{...}` (and the brace-less `\\boxed 5`) as (position, content)."""
    found = []
    for match in BOXED.finditer(text):
        after = match.end()
        if text.startswith("{", after):
            content = braced(text, after)
        elif after > match.start() + len(match.group().rstrip()):  # `\boxed 5`: up to a blank or a dollar
            token = re.match(r"[^\s$]+", text[after:])
            content = token.group() if token else None
        else:
            content = None
        if content is not None:
            found.append((match.start(), content))
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last box: how a MATH reference solution marks its answer."""
    found = boxed(text)
    return found[-1][1] if found else None


def rest_of_line(text: str, start: int) -> str:
    """The text from `start` to the end of its line; the next non-blank line when that holds no more than
    blanks and bold markers (`**Answer:**` above `$18`)."""
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    if LEAD.sub("", line, count=1) or end < 0:
        return line
    following = text[end:].lstrip()
    return following.split("\n", 1)[0]


def statements(text: str) -> list[Statement]:
    """Every place where `text` states a final answer, in order of position."""
    found = [Statement(m.start(), "hashes", rest_of_line(text, m.end())) for m in HASHES.finditer(text)]
    found += [Statement(start, "boxed", content) for start, content in boxed(text)]
    found += [Statement(m.start(), "phrase", rest_of_line(text, m.end())) for m in PHRASE.finditer(text)]
    return sorted(found, key=lambda s: s.start)


def first_stated(text: str, read: Callable[[Statement], str | None]) -> str | None:
    """The value that `read` finds in the first statement that holds one; None when none does."""
    for statement in statements(text):
        value = read(statement)
        if value is not None:
            return value
    return None


def unwrap(text: str) -> str:
    """`text` without what precedes a value (blanks, bold, colons, answer phrases) and with a leading box
    opened: `** The final answer is \\boxed{18} dollars` -> `18`."""
    while True:
        text = LEAD.sub("", text, count=1)
        box = BOXED.match(text)
        content = braced(text, box.end()) if box and text.startswith("{", box.end()) else None
        if content is None:
            return text
        text = content


def equivalent(predicted: str, gold: str) -> bool:
    """Whether math-verify finds `predicted` equal to `gold`; on a timeout or unparsable text, whether the
    two strings are identical."""
    try:
        return bool(
            verify(
                parse(gold, parsing_timeout=CHECK_TIMEOUT_S),
                parse(predicted, parsing_timeout=CHECK_TIMEOUT_S),
                timeout_seconds=CHECK_TIMEOUT_S,
            )
        )
    except Exception:  # math-verify raises on timeouts and unparsable text; either way: compare the text
        return predicted == gold
