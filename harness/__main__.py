"""Entry point for `python -m harness`."""

import sys

USAGE = """usage: python -m harness COMMAND [options]

  smoke  one Service with N pods in a node (--node uml|netns), R new connections to its
         ClusterIP; prints one JSON line
  demo   full vs partial iptables syncs on the host kernel, in a throwaway network namespace

(calibrate and the full bench arrive with issues 4 and 5)"""


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "smoke":
        from harness import smoke

        return smoke.main(sys.argv[2:])
    if command == "demo":
        from harness import demo

        return demo.main(sys.argv[2:])
    print(USAGE, file=sys.stderr)
    return 2


sys.exit(main())
