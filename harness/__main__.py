"""Entry point for `python -m harness`."""

import importlib
import sys

USAGE = """usage: python -m harness COMMAND [options]

  smoke  one Service with N pods in a node (--node uml|netns), R new connections to its
         ClusterIP; prints one JSON line
  calibrate  the reconciler against bare iptables-restore and ipvsadm -R on one node
             (--node uml|netns --services S --endpoints E); prints one JSON line
  sweep      sync cost per strategy (iptables full, iptables partial, ipvs) and cluster
             size in one node (--node uml|netns --sizes 100,1000); writes syncs.csv
  demo   full vs partial iptables syncs on the host kernel, in a throwaway network namespace
  bench  the iptables-vs-ipvs comparison (sweep, churn under traffic, fairness) into
         results/<run-id>/ with report.md and plots (--quick: <= 10 min; --help)
  report RUN   rebuild RUN's report.md, traffic.csv, fairness.csv and plots from its raw files
  compare A B  B's figures as ratios of A's
  gate   the hot-path benchmarks against results/baseline/benchmarks.json (--baseline,
         --threshold, --refresh); exit 1 on a regression"""


# Each command is a module of the harness package with a main(argv) -> exit code; it is
# imported only when run, so `bench` does not pay for `gate`'s imports and vice versa.
COMMANDS = ("smoke", "calibrate", "sweep", "bench", "report", "compare", "gate", "demo")


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    module = importlib.import_module(f"harness.{command}")
    code: int = module.main(sys.argv[2:])
    return code


sys.exit(main())
