"""The argument parser every `emotic` command builds for itself (the dispatcher, `emotic.cli`, imports the commands,
never the other way round)."""

import argparse
import math


class CommandParser(argparse.ArgumentParser):
    """argparse with transformers' `HfArgumentParser` spelling rule: every multi-word option is accepted with
    underscores and with dashes (`--output_dir` and `--output-dir`), whichever way it was declared."""

    def add_argument(self, *names, **kwargs):
        spellings = list(names)
        for name in names:
            if name.startswith("--"):
                for other in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
                    if other not in spellings:
                        spellings.append(other)
        return super().add_argument(*spellings, **kwargs)


def command_parser(prog: str, doc: str) -> CommandParser:
    """The parser of one `emotic` command from its module docstring: the first paragraph describes it, the
    paragraphs after the usage block close the help."""
    paragraphs = doc.split("\n\n")
    return CommandParser(prog=prog, description=paragraphs[0], epilog="\n\n".join(paragraphs[2:]),
                         formatter_class=argparse.RawDescriptionHelpFormatter)


def check_number(option: str, value, low: float, high: float, integer: bool = False, low_open: bool = False) -> None:
    """A `ValueError` naming `option` unless `value` is a finite number in [low, high] ((low, high] with
    `low_open`; an integer with `integer`). Every numeric option is checked so before it is used: `inf` and `1e308`
    pass argparse's `float` and would overflow later."""
    if value is None:
        return
    kind = "an integer" if integer else "a number"
    bounds = f"{'>' if low_open else '>='} {low:g} and <= {high:g}"
    if (integer and (isinstance(value, bool) or not isinstance(value, int))) or not math.isfinite(value) \
            or not (low < value if low_open else low <= value) or value > high:
        raise ValueError(f"{option} {value}: expected {kind} {bounds}")
