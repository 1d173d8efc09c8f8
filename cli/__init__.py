"""The painters-gguf command line (installed as `painters_gguf.cli`): parse, call the library, render."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point: a PaintersError (even while importing) is one line on stderr and exit code 2."""
    from painters_gguf.errors import PaintersError

    try:
        from painters_gguf.cli.app import app

        app()
    except PaintersError as error:
        from rich.markup import escape

        from painters_gguf.cli.console import err

        err.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        from painters_gguf.cli.console import err

        err.print("interrupted: finished documents are saved; run the same command to resume")
        sys.exit(130)
