"""Entry point for `python -m harness`."""

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


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "smoke":
        from harness import smoke

        return smoke.main(sys.argv[2:])
    if command == "calibrate":
        from harness import calibrate

        return calibrate.main(sys.argv[2:])
    if command == "sweep":
        from harness import sweep

        return sweep.main(sys.argv[2:])
    if command == "bench":
        from harness import bench

        return bench.main(sys.argv[2:])
    if command == "report":
        from harness import report

        return report.main(sys.argv[2:])
    if command == "compare":
        from harness import compare

        return compare.main(sys.argv[2:])
    if command == "gate":
        from harness import gate

        return gate.main(sys.argv[2:])
    if command == "demo":
        from harness import demo

        return demo.main(sys.argv[2:])
    print(USAGE, file=sys.stderr)
    return 2


sys.exit(main())
