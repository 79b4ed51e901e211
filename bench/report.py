"""What a bench run found: figure rows (each beside its baseline from the same run), the
commands that produced them, and where it ran. Printed as a table and written between the
markers of ``docs/benchmarks.md``, leaving the rest of that file as it is.

A section is a list of :class:`Figure` rows; any bench can add its own with
:meth:`Report.add` (or :meth:`Report.add_dict` for a plain dict of the same fields).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ROOT = Path(__file__).resolve().parent.parent
NEW_DOC = f"""# Benchmarks

Written by `make bench` between the markers below; edit outside them only.

{BEGIN}
{END}

## Profiles
"""


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``value`` is None when the measurement is broken (``note`` says
    why); a broken figure is never shown as a number."""

    section: str
    what: str
    value: float | None
    unit: str
    baseline: str = ""
    """Name of the figure it is compared to (measured in the same run)."""
    baseline_value: float | None = None
    goal: str = ""
    met: bool | None = None
    detail: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value

    def shown_value(self) -> str:
        if self.value is None:
            return "broken"
        return f"{_number(self.value)} {self.unit}"

    def shown_baseline(self) -> str:
        if not self.baseline:
            return "-"
        if self.baseline_value is None:
            return f"{self.baseline}: broken"
        return f"{self.baseline}: {_number(self.baseline_value)}"

    def shown_ratio(self) -> str:
        ratio = self.ratio
        return "-" if ratio is None else f"{ratio:.3f}"

    def shown_met(self) -> str:
        if not self.goal:
            return ""
        return {True: "met", False: "NOT met", None: "no figure"}[self.met]


def _number(value: float) -> str:
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def add_dict(self, values: Mapping[str, Any]) -> Figure:
        names = {f.name for f in fields(Figure)}
        return self.add(Figure(**{k: v for k, v in values.items() if k in names}))

    def command(self, label: str, cmd: Sequence[str] | str) -> None:
        self.commands.append((label, cmd if isinstance(cmd, str) else shown_command(cmd)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def sections(self) -> dict[str, list[Figure]]:
        found: dict[str, list[Figure]] = {}
        for figure in self.figures:
            found.setdefault(figure.section, []).append(figure)
        return found


def shown_command(
    cmd: Iterable[str],
    replace: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """A command line as a reader can run it: ``env``'s settings first (``NAME=value``),
    this interpreter as ``.venv/bin/python``, the repository's paths relative, programs by
    name, and ``replace`` applied (temporary dirs, keys: their stand-ins, such as ``$TMP``,
    stay open to the shell)."""
    python = Path(sys.executable)
    words = [f"{name}={_quoted(_shown(value, replace))}" for name, value in (env or {}).items()]
    for i, arg in enumerate(cmd):
        if arg == str(python):
            arg = _relative(python)
        elif i == 0 and os.sep in arg:
            arg = Path(arg).name  # a program on the PATH, such as nginx
        words.append(_quoted(_shown(arg, replace)))
    return " ".join(words)


def _shown(arg: str, replace: Mapping[str, str] | None) -> str:
    for old, new in (replace or {}).items():
        arg = arg.replace(old, new)
    return arg.replace(str(ROOT) + os.sep, "")


def _quoted(arg: str) -> str:
    if "$" in arg and not any(c in arg for c in '"`!'):
        return f'"{arg}"' if shlex.quote(arg.replace("$", "")) != arg.replace("$", "") else arg
    return shlex.quote(arg)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return path.name


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    system = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip('"')
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": memory,
        "OS": f"{system}, kernel {platform.release()}",
        "Python": platform.python_version(),
    }


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = [
        line
        for line in git("status", "--porcelain").splitlines()
        if "docs/benchmarks.md" not in line
    ]
    return commit + (" (with uncommitted changes)" if changed else "")


def text_table(report: Report) -> str:
    lines = []
    for section, figures in report.sections().items():
        lines.append(f"\n{section}")
        width = max(len(f.what) for f in figures)
        base_width = max(len(f.shown_baseline()) for f in figures)
        lines.append(
            f"  {'what':<{width}}  {'value':>15}  {'baseline (same run)':<{base_width}}"
            f"  {'ratio':>7}  goal"
        )
        for f in figures:
            goal = f"{f.goal} -> {f.shown_met()}" if f.goal else ""
            lines.append(
                f"  {f.what:<{width}}  {f.shown_value():>15}  {f.shown_baseline():<{base_width}}"
                f"  {f.shown_ratio():>7}  {goal}"
            )
            for extra in (f.detail, f.note):
                if extra:
                    lines.append(f"  {'':<{width}}    {extra}")
    return "\n".join(lines)


def markdown(report: Report, facts: Mapping[str, str]) -> str:
    out = ["## Latest run", ""]
    out += [f"- **{name}**: {value}" for name, value in facts.items()]
    for section, figures in report.sections().items():
        out += ["", f"### {section}", ""]
        out += ["| what | value | baseline (same run) | ratio | detail | goal |", "|---" * 6 + "|"]
        for f in figures:
            goal = f"{f.goal}: **{f.shown_met()}**" if f.goal else ""
            detail = "; ".join(x for x in (f.detail, f.note) if x)
            cells = (f.what, f.shown_value(), f.shown_baseline(), f.shown_ratio(), detail, goal)
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if report.notes:
        out += ["", "### Notes", ""]
        out += [f"- {note}" for note in report.notes]
    if report.commands:
        out += ["", "### Commands", ""]
        for label, cmd in report.commands:
            out += [f"{label}:", "", "```sh", cmd, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def replace_between_markers(document: str, generated: str) -> str:
    """``document`` with what lies between the bench markers replaced by ``generated``;
    a document without markers gets them (after its title, if it has one)."""
    block = f"{BEGIN}\n{generated.strip()}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    head, newline, rest = document.partition("\n")
    if head.startswith("# "):
        return f"{head}\n\n{block}\n{newline}{rest}"
    return f"{block}\n\n{document}"


def write_doc(path: Path, report: Report, facts: Mapping[str, str]) -> None:
    document = path.read_text() if path.exists() else NEW_DOC
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_between_markers(document, markdown(report, facts)))


def run_facts(started: datetime, tools: Mapping[str, str]) -> dict[str, str]:
    return {
        "date": started.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        **machine(),
        **tools,
    }


def percentile(values: Iterable[float], q: float) -> float:
    """The value at quantile ``q`` of ``values``: the one of rank :func:`percentile_rank`
    (nearest rank, none made up between two)."""
    ordered = sorted(values)
    return ordered[percentile_rank(len(ordered), q)]


def percentile_rank(count: int, q: float) -> int:
    """Which of ``count`` ordered values :func:`percentile` takes for quantile ``q``."""
    return min(count - 1, round(q * (count - 1)))
