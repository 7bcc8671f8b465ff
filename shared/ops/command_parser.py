"""The argument parser of every command: a wrong flag is one line, not the whole usage.

argparse answers an unknown or incomplete flag with the command's full usage, 70 lines for
`engagement run`, the error last. A user who mistyped `--fsp` needs the error, the flag meant and
where the rest are listed, in one line (`engagement run: unrecognized arguments: --fsp (did you mean
--fps?); see ...`), with argparse's exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
from typing import NoReturn

EXIT_USAGE = 2  # argparse's own code for a wrong command line


class CommandParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line on standard error, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}{self._suggestion(message)}; "
                              f"see `{self.prog} --help`\n")

    def _suggestion(self, message: str) -> str:
        """' (did you mean --fps?)' for a mistyped flag, else nothing."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        flags = [flag for action in self._actions for flag in action.option_strings]
        given = [word.split("=", 1)[0] for word in message.split(":", 1)[1].split() if word.startswith("-")]
        meant = [close[0] for word in given if (close := difflib.get_close_matches(word, flags, n=1, cutoff=0.7))]
        return f" (did you mean {', '.join(meant)}?)" if meant else ""
