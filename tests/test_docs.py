"""The README and docs/ as a reader uses them.

- every relative link and image in README.md and docs/*.md points to a file of this checkout (and
  a `#fragment` into a Markdown file to one of its headings);
- the README stays a guide: at most README_MAX_LINES lines;
- every `painters-gguf` command shown (in code blocks, and in inline code in the prose) names a
  subcommand that exists, only options that its `--help` lists, and no more arguments than its
  usage takes (`lm-eval`'s are lm-eval's); the cheap ones shown in code blocks (`--help`, `--version`, `plan ...`,
  `models list`) are run through the installed CLI: exit code 0, and the output the page shows
  after a `$ ` prompt (an `error:` line: exit code 2 and that message).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from conftest import catalog_path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CLI = Path(sys.executable).with_name("painters-gguf")
README_MAX_LINES = 290

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
SHELL_FENCES = {"", "sh", "bash", "shell", "console", "text"}
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # COMMAND, NAME, MODEL
NUMBER = re.compile(r"^-\d")
ELIDED = {"...", "…"}
PASSTHROUGH = {("lm-eval",)}  # `painters-gguf lm-eval ARGS`: ARGS are lm-eval's own


# --- Markdown ------------------------------------------------------------------------------------


@dataclass
class Page:
    path: Path
    prose: list[tuple[int, str]] = field(default_factory=list)  # (line number, text), code blanked
    code: list[tuple[int, str]] = field(default_factory=list)  # shell code lines
    blocks: list[list[tuple[int, str]]] = field(default_factory=list)  # shell code blocks

    @property
    def name(self) -> str:
        return str(self.path.relative_to(REPO)) if self.path.is_relative_to(REPO) else self.path.name


def read_page(path: Path) -> Page:
    """Split a Markdown page into prose and code (fenced, or indented by 4 after a blank line)."""
    page = Page(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    fence: str | None = None
    shell = False
    block: list[tuple[int, str]] = []
    previous_blank = True

    def end_block() -> None:
        nonlocal block
        if block and shell:
            page.blocks.append(block)
            page.code.extend(block)
        block = []

    for number, line in enumerate(lines, 1):
        opened = FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1).startswith(fence):
                end_block()
                fence = None
            else:
                block.append((number, line))
            page.prose.append((number, ""))
            continue
        if opened:
            end_block()
            fence, shell = opened.group(1), opened.group(2).lower() in SHELL_FENCES
            page.prose.append((number, ""))
            continue
        indented = line.startswith(("    ", "\t")) and line.strip()
        if indented and (previous_blank or block):
            shell = True
            block.append((number, line[4:] if line.startswith("    ") else line[1:]))
            page.prose.append((number, ""))
            continue
        if not line.strip() and block:  # a blank line inside an indented block
            page.prose.append((number, ""))
            previous_blank = True
            continue
        end_block()
        page.prose.append((number, line))
        previous_blank = not line.strip()
    end_block()
    return page


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in read_page(path).prose:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
        for name in re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line):
            found.add(name)
    return frozenset(found)


def links(page: Page) -> list[tuple[int, str]]:
    """(line, target) of every link and image in the prose, code spans left out."""
    found = []
    for number, line in page.prose:
        text = INLINE_CODE.sub("", line)
        found += [(number, target) for target in LINK.findall(text)]
        reference = REF_LINK.match(text)
        if reference:
            found.append((number, reference.group(1)))
    return found


def link_problem(page: Path, target: str, root: Path = REPO) -> str | None:
    """Why a link from page to target is broken, or None (external links are not checked)."""
    if re.match(r"^[a-zA-Z][\w+.-]*:", target):  # https:, mailto:
        return None
    path_part, _, fragment = target.partition("#")
    if not path_part:
        dest = page
    elif path_part.startswith("/"):
        dest = root / path_part.lstrip("/")
    else:
        dest = page.parent / path_part
    dest = dest.resolve()
    if not dest.is_relative_to(root):
        return f"{target}: outside the repository"
    if not dest.exists():
        return f"{target}: no such file ({dest.relative_to(root)})"
    if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
        return f"{target}: no heading #{fragment} in {dest.relative_to(root)}"
    return None


# --- Commands shown ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    where: str  # page:line
    argv: tuple[str, ...]  # what follows painters-gguf
    in_code: bool
    output: tuple[str, ...] = ()  # what the page shows after a `$ ` prompt

    def __str__(self) -> str:
        return f"{self.where}: painters-gguf {shlex.join(self.argv)}"


def is_cli(token: str) -> bool:
    return token == "painters-gguf" or token.endswith("/bin/painters-gguf")


def invocations(line: str) -> list[tuple[str, ...]]:
    """The painters-gguf invocations in a shell line (after `&&`, `;`, `|`, `--` too)."""
    if "painters-gguf" not in line:
        return []
    tokens = shlex.split(line, comments=True)
    found = []
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token in {"&&", "||", ";", "|"}:
            at = next((i for i, t in enumerate(segment) if is_cli(t)), None)
            if at is not None:
                found.append(tuple(segment[at + 1 :]))
            segment = []
        else:
            segment.append(token)
    return found


def shown_commands(page: Page) -> list[Shown]:
    shown: list[Shown] = []
    for block in page.blocks:
        joined: list[tuple[int, str]] = []  # backslash continuations joined
        for number, line in block:
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
            else:
                joined.append((number, line))
        prompts = any(line.lstrip().startswith("$ ") for _, line in joined)
        for i, (number, line) in enumerate(joined):
            prompt = line.lstrip().startswith("$ ")
            if prompts and not prompt:
                continue  # what the command printed
            command = line.lstrip()[2:] if prompt else line
            output: list[str] = []
            if prompt:
                for _, after in joined[i + 1 :]:
                    if after.lstrip().startswith("$ "):
                        break
                    output.append(after.strip())
            for argv in invocations(command):
                shown.append(Shown(f"{page.name}:{number}", argv, True, tuple(output)))
    prose = "\n".join(text for _, text in page.prose)
    for match in INLINE_CODE.finditer(prose):
        span = match.group(2)
        if "\n\n" in span or "painters-gguf" not in span:
            continue
        number = prose.count("\n", 0, match.start()) + 1
        try:
            argvs = invocations(span.replace("\n", " "))
        except ValueError:
            continue  # not shell (a path, a package name)
        shown += [Shown(f"{page.name}:{number}", argv, False) for argv in argvs]
    return shown


SHOWN = [command for path in PAGES for command in shown_commands(read_page(path))]


# --- The CLI's own help --------------------------------------------------------------------------


@dataclass(frozen=True)
class Help:
    options: frozenset[str]
    takes_value: frozenset[str]
    commands: frozenset[str]
    max_args: int | None  # None: any number


OPTION_ROW = re.compile(r"^[│|]?\s{0,6}(?:\*\s+)?(-{1,2}[A-Za-z][\w-]*(?:,?\s+-{1,2}[A-Za-z][\w-]*)*),?(.*)$")
COMMAND_ROW = re.compile(r"^(?:│ |  )([a-z][\w.-]*)(?:\s{2,}|\s*│?\s*$)")


def run_cli(argv: list[str] | tuple[str, ...], db: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    if db is not None:
        env["PAINTERS_GGUF_DB"] = str(db)
    return subprocess.run([str(CLI), *argv], capture_output=True, text=True, env=env, timeout=120)


@cache
def help_of(path: tuple[str, ...]) -> Help:
    result = run_cli([*path, "--help"])
    assert result.returncode == 0, f"painters-gguf {' '.join(path)} --help: {result.stderr}"
    options: set[str] = set()
    takes_value: set[str] = set()
    commands: set[str] = set()
    max_args: int | None = 0
    section = ""
    for line in result.stdout.split("\n"):
        header = re.match(r"^\s*(?:╭─\s*)?(\w[\w ]*?)\s*(?::|─)", line)
        if header and (line.lstrip().startswith("╭") or re.match(r"^\w[\w ]*:\s*$", line)):
            section = header.group(1).lower()
            continue
        usage = re.match(r"^\s*Usage:\s*(.*)$", line)
        if usage:
            words = usage.group(1).split()
            rest = words[words.index("[OPTIONS]") + 1 :] if "[OPTIONS]" in words else []
            max_args = None if any(w.endswith("...") for w in rest) else len(rest)
            continue
        if section == "commands":
            row = COMMAND_ROW.match(line)
            if row:
                commands.add(row.group(1))
            continue
        row = OPTION_ROW.match(line)
        if row:
            names = re.findall(r"-{1,2}[A-Za-z][\w-]*", row.group(1))
            options.update(names)
            metavar = row.group(2).split()
            rich = line.startswith("│")
            if metavar and (
                (metavar[0].startswith("<") and metavar[0] != "<bool>") or (not rich and re.match(r"^[A-Z][A-Z_|]+$", metavar[0]))
            ):
                takes_value.update(names)
    assert options, f"no options read from `painters-gguf {' '.join(path)} --help`:\n{result.stdout}"
    return Help(frozenset(options), frozenset(takes_value), frozenset(commands), max_args)


def usage_problems(argv: tuple[str, ...]) -> list[str]:
    """What in argv the CLI's --help says does not exist: a subcommand, an option, an argument."""
    problems: list[str] = []
    path: tuple[str, ...] = ()
    info = help_of(path)
    args = 0
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token in ELIDED:
            continue
        where = " ".join(("painters-gguf", *path))
        if token.startswith("-") and not NUMBER.match(token) and token != "-":
            name = token.split("=", 1)[0]
            if name not in info.options:
                problems.append(f"`{where}` has no option {name} (see `{where} --help`)")
            elif name in info.takes_value and "=" not in token:
                i += 1  # its value
            continue
        if info.commands:
            if PLACEHOLDER.match(token):
                return problems  # `painters-gguf COMMAND --help`: nothing more to check
            if token not in info.commands:
                problems.append(f"`{where}` has no command {token!r} (it has {', '.join(sorted(info.commands))})")
                return problems
            path = (*path, token)
            if path in PASSTHROUGH:
                return problems  # the rest is another program's command line
            info = help_of(path)
            continue
        args += 1
        if info.max_args is not None and args > info.max_args:
            problems.append(f"`{where}` takes {info.max_args} argument(s); {token!r} is one more")
    return problems


def is_cheap(argv: tuple[str, ...]) -> bool:
    return "--help" in argv or "--version" in argv or argv[:1] == ("plan",) or argv[:2] == ("models", "list")


def normalized(text: str) -> str:
    return " ".join(text.split())


# --- Tests ---------------------------------------------------------------------------------------


def test_pages_are_found() -> None:
    assert (REPO / "README.md") in PAGES and len(PAGES) > 1
    assert any(command.in_code for command in SHOWN), "no painters-gguf command found in a code block"
    assert any(is_cheap(command.argv) for command in SHOWN if command.in_code)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    parsed = read_page(page)
    problems = [f"{parsed.name}:{n}: {why}" for n, target in links(parsed) if (why := link_problem(page, target))]
    assert not problems, "\n".join(problems)


def test_readme_is_a_guide_not_a_report() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/ (at most {README_MAX_LINES})"


def test_shown_commands_use_existing_subcommands_and_options() -> None:
    problems = [f"{command}\n    {problem}" for command in SHOWN for problem in usage_problems(command.argv)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "command", [c for c in SHOWN if c.in_code and is_cheap(c.argv)], ids=lambda c: f"{c.where} {' '.join(c.argv)}"
)
def test_cheap_shown_commands_run(command: Shown, smollm2_path: Path, tmp_path: Path) -> None:
    # a model the command names must be there (scripts/setup.sh fetches the catalog's; smollm2_path: the default)
    for i, token in enumerate(command.argv[:-1]):
        name = command.argv[i + 1]
        if token in {"-m", "--model"} and not name.endswith(".gguf") and name.count("/") == 0:
            catalog_path(name)
    result = run_cli(command.argv, db=tmp_path / "results.db")
    said = normalized(result.stdout + "\n" + result.stderr)
    error = next((line for line in command.output if line.startswith("error:")), None)
    if error is not None:
        assert result.returncode == 2, f"{command}: exit code {result.returncode}, the page shows an error\n{said}"
        assert normalized(error) in said, f"{command}: the page shows\n    {error}\nthe CLI said\n    {said}"
        return
    assert result.returncode == 0, f"{command}: exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    for line in command.output:
        if line and not any(mark in line for mark in ELIDED):
            assert normalized(line) in said, f"{command}: the page shows\n    {line}\nthe CLI said\n    {said}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """A misspelled or removed flag, a value given to a flag, an unknown command, a broken link."""
    page = tmp_path.resolve() / "page.md"
    page.write_text(
        "# Title\n\nSee [here](missing.md) and [there](#title) and [nowhere](#nowhere).\n\n"
        "    painters-gguf eval --limt 10\n"
        "    painters-gguf eval -o r.json --log-samples samples.jsonl\n"
        "    painters-gguf evaluate --limit 10\n"
        "    painters-gguf sweep --variant skip --limit 10\n\n"
        "Inline: `painters-gguf report --plott figures/`.\n",
        encoding="utf-8",
    )
    parsed = read_page(page)
    broken = [target for _, target in links(parsed) if link_problem(page, target, root=tmp_path.resolve())]
    assert broken == ["missing.md", "#nowhere"]
    shown = shown_commands(parsed)
    assert [c.argv[0] for c in shown] == ["eval", "eval", "evaluate", "sweep", "report"]
    assert [bool(usage_problems(c.argv)) for c in shown] == [True, True, True, False, True]
    assert usage_problems(("models", "fetch", "smollm2-135m")) == []
    assert usage_problems(("--db", "x.db", "models", "list")) == []
    assert usage_problems(("COMMAND", "--help")) == []
