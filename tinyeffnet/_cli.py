"""What every command shares: an argument parser whose errors are one line and exit 2."""
import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line `error: ...` and exit status 2 (no usage block)."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
