"""The steps a Dockerfile builds with given build arguments, rendered as text, one a line.

Comments and ARG instructions go (an ARG is no step), continuation lines are joined, runs of
blanks become one, and every ``${NAME}`` / ``${NAME:+word}`` of an ARG in scope is replaced by
its value, as the builder and the RUN shell would see it. Names that are not ARGs (ENV, shell
variables, ``${WORKER_MODE:-queue}`` read at run time) are left as they are.

``python -m tests.docker.steps [Dockerfile] [NAME=VALUE ...]`` prints them: a diff of two
renderings shows what a change does to the production build (docs/deploy.md).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

_REFERENCE = re.compile(r"\$\{(\w+)(:\+([^}]*))?\}")


def _instructions(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield " ".join((pending + line).split())
        pending = ""
    if pending:
        yield " ".join(pending.split())


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, plus, word = match.group(1), match.group(2), match.group(3)
        if name not in values:
            return match.group(0)
        if plus:
            return _substitute(word, values) if values[name] else ""
        return values[name]

    return " ".join(_REFERENCE.sub(value, text).split())


def render(text: str, build_args: Mapping[str, str] | None = None) -> list[str]:
    """The steps of ``text`` (a Dockerfile) built with ``build_args`` (``--build-arg``)."""
    given = dict(build_args or {})
    global_args: dict[str, str] = {}
    scope: dict[str, str] = {}
    in_stage = False
    steps: list[str] = []
    for instruction in _instructions(text):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            if name in given:
                chosen = given[name]
            elif has_default:
                chosen = _substitute(default, scope if in_stage else global_args)
            else:
                chosen = global_args.get(name, "")
            (scope if in_stage else global_args)[name] = chosen
            continue
        if keyword == "FROM":
            steps.append(_substitute(instruction, global_args))
            in_stage, scope = True, {}
            continue
        steps.append(_substitute(instruction, scope))
    return steps


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv and "=" not in argv[0] else Path("docker/Dockerfile.fastwan")
    build_args = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    print("\n".join(render(path.read_text(), build_args)))


if __name__ == "__main__":
    main(sys.argv[1:])
