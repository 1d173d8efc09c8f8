"""The painters-gguf command line (installed as `painters_gguf.cli`): parse, call the library, render."""

from __future__ import annotations

import os
import sys

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def main() -> None:
    """Entry point: bad input (an option value, a file, a plan; even while importing) is one line
    on stderr and exit code 2; Ctrl-C keeps what is finished and exits 130."""
    import typer

    from painters_gguf.errors import PaintersError

    try:
        from painters_gguf.cli.app import app

        code = app(standalone_mode=False)
    except typer.TyperException as error:  # an option the parser refused: its message, on one line
        context = getattr(error, "ctx", None)
        if not error.format_message():  # no arguments: the help was printed
            sys.exit(error.exit_code)
        _fail((f"{context.command_path}: " if context is not None else "") + error.format_message())
    except PaintersError as error:
        _fail(str(error))
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as error:  # the environment: a full disk or terminal, a read-only folder
        where = f" ({error.filename})" if error.filename else ""
        _fail((error.strerror or str(error)) + where)
    if code == INTERRUPTED:  # Typer turns a KeyboardInterrupt inside a command into this code, silently
        _say("interrupted: finished documents are saved; run the same command to resume")
    sys.exit(code if isinstance(code, int) else 0)


def _say(text: str) -> None:
    from painters_gguf.cli.console import err

    err.print(text, soft_wrap=True)


def _fail(message: str) -> None:
    from painters_gguf.cli.console import untrusted

    _say(f"[bold red]error:[/] {untrusted(' '.join(message.split()))}")
    sys.exit(2)
