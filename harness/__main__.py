"""Entry point for `python -m harness`."""

import sys

USAGE = """usage: python -m harness demo [--services N] [--endpoints E]

  demo   full vs partial iptables syncs on the host kernel, in a throwaway network namespace
         (the UML node, smoke, calibrate and the full bench arrive with issues 3-5)"""


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo",):
        print(USAGE, file=sys.stderr)
        return 2
    from harness import demo

    return demo.main(sys.argv[2:])


sys.exit(main())
