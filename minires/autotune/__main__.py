"""``python -m minires.autotune``: print the conv algorithms timed on this machine; ``--clear`` forgets them."""
import argparse
import sys

from . import cache_path, clear, machine_id, report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minires.autotune",
                                     description="Print (or clear) the conv algorithms timed on this machine.")
    parser.add_argument("--clear", action="store_true", help="forget this machine's choices (they are timed again)")
    args = parser.parse_args(argv)
    if args.clear:
        print(f"cleared {clear()} choices for {machine_id()} from {cache_path()}")
    else:
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
