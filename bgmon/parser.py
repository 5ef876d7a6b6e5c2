"""The command-line parser of every bgmon command."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from bgmon.exitcodes import EXIT_USAGE
from bgmon.printable import single_line


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line on stderr (what is wrong,
    and where the help is) and exit 2, as every bgmon user error is. argparse's own way prints
    the whole usage first, a dozen lines that bury the one that matters."""

    def error(self, message: str) -> NoReturn:
        print(single_line(f"{self.prog}: {message} (see {self.prog} --help)"), file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
