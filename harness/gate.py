"""`python -m harness gate`: the hot-path benchmarks (tests/gate) against a committed baseline.

Times are compared in units of a calibration loop timed right around each benchmark (each
benchmark's minimum over its rounds, divided by the loop's best time there), so a slower or
busier machine, even one whose load changes during the run, moves both and cancels out. A benchmark regresses when its
calibrated time exceeds the baseline's by more than the threshold (default 1.5x); one that
seems to regress is measured again and keeps its better minimum, so a one-off stall on a
shared machine does not fail the gate while a real slowdown fails it both times.
Work counters (rules, bytes, netlink operations) are deterministic: they may only go down.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = REPO_ROOT / "results" / "baseline" / "benchmarks.json"
DEFAULT_OUT = REPO_ROOT / "results" / "gate" / "benchmarks.json"
CALIBRATION = "test_calibration"
THRESHOLD = 1.5
STATISTIC = "min"  # the least disturbed round: noise only ever adds time


class GateError(Exception):
    """A usage problem (missing or unreadable file); exit 2 with this message."""


@dataclass(frozen=True)
class Bench:
    seconds: float  # STATISTIC over the rounds
    counters: dict[str, int]
    # The calibration loop's best time around this benchmark (None: use the run's own
    # test_calibration benchmark).
    calibration: float | None = None


@dataclass(frozen=True)
class Row:
    benchmark: str
    measure: str  # "time (calibrated)" or a counter's name
    baseline: float | None
    current: float | None
    verdict: str  # ok, REGRESSED, MISSING, improved, new

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.current is None or self.baseline == 0:
            return None
        return self.current / self.baseline

    @property
    def fails(self) -> bool:
        return self.verdict in ("REGRESSED", "MISSING")


def load(path: Path) -> dict[str, Bench]:
    """pytest-benchmark's JSON (--benchmark-json) as name -> Bench."""
    try:
        doc = json.loads(path.read_text())
        out = {}
        for b in doc["benchmarks"]:
            extra = b.get("extra_info") or {}
            calibration = extra.get("calibration_s")
            out[b["name"]] = Bench(
                float(b["stats"][STATISTIC]),
                dict(extra.get("counters", {})),
                float(calibration) if calibration else None,
            )
        return out
    except FileNotFoundError:
        raise GateError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GateError(f"{path}: not a pytest-benchmark JSON file ({exc})") from exc


def calibrated(benches: dict[str, Bench], path: str) -> dict[str, float]:
    """Each benchmark's time in units of the calibration loop timed around it (or, failing
    that, of the run's test_calibration)."""
    if CALIBRATION not in benches:
        raise GateError(f"{path}: has no {CALIBRATION} benchmark to calibrate against")
    unit = benches[CALIBRATION].seconds
    return {
        name: b.seconds / (b.calibration or unit)
        for name, b in benches.items()
        if name != CALIBRATION
    }


def compare(
    baseline: dict[str, Bench],
    current: dict[str, Bench],
    threshold: float = THRESHOLD,
    current_times: dict[str, float] | None = None,
) -> list[Row]:
    """Rows for every benchmark and counter. `current_times` overrides the calibrated times
    of `current` (the better of two runs, after a re-measure)."""
    base_t = calibrated(baseline, "baseline")
    cur_t = current_times if current_times is not None else calibrated(current, "current run")
    rows = []
    for name in sorted(set(base_t) | set(cur_t)):
        if name not in cur_t:
            rows.append(Row(name, "time (calibrated)", base_t[name], None, "MISSING"))
            continue
        if name not in base_t:
            rows.append(Row(name, "time (calibrated)", None, cur_t[name], "new"))
            continue
        ratio = cur_t[name] / base_t[name]
        verdict = (
            "REGRESSED" if ratio > threshold else ("improved" if ratio < 1 / threshold else "ok")
        )
        rows.append(Row(name, "time (calibrated)", base_t[name], cur_t[name], verdict))
        base_c, cur_c = baseline[name].counters, current[name].counters
        for counter in sorted(set(base_c) | set(cur_c)):
            b, c = base_c.get(counter), cur_c.get(counter)
            if c is None:
                verdict = "MISSING"
            elif b is None:
                verdict = "new"
            else:
                verdict = "REGRESSED" if c > b else ("improved" if c < b else "ok")
            rows.append(Row(name, counter, b, c, verdict))
    return rows


def best_of(first: dict[str, float], again: dict[str, float]) -> dict[str, float]:
    """Each benchmark's better calibrated time of two runs, each calibrated in its own run."""
    return {name: min(t, again.get(name, t)) for name, t in first.items()}


def table(rows: list[Row]) -> str:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "benchmark": r.benchmark,
                "measure": r.measure,
                "baseline": r.baseline,
                "current": r.current,
                "current/baseline": r.ratio,
                "verdict": r.verdict,
            }
            for r in rows
        ]
    )
    return str(frame.to_markdown(index=False, floatfmt=".4g"))


def run_benchmarks(out: Path, names: list[str] | None = None) -> None:
    """Runs tests/gate under pytest-benchmark, writing its JSON to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "pytest", str(REPO_ROOT / "tests" / "gate"), "-m", "gate", "-q",
        "-p", "no:cacheprovider", "--benchmark-disable-gc", "--benchmark-columns=min,median,rounds",
        f"--benchmark-json={out}",
    ]  # fmt: skip
    if names:
        argv += ["-k", " or ".join(sorted({n.split("[")[0] for n in [*names, CALIBRATION]}))]
    done = subprocess.run(argv, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise GateError(f"the gate's benchmarks failed (pytest exit {done.returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness gate", description=__doc__)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument(
        "--threshold", type=float, default=THRESHOLD, help="slowdown factor that fails"
    )
    parser.add_argument(
        "--current", type=Path, help="compare this JSON instead of running the benchmarks"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where this run's JSON goes")
    parser.add_argument(
        "--refresh", action="store_true", help="after comparing, make this run the new baseline"
    )
    args = parser.parse_args(argv)
    if args.threshold <= 1:
        parser.error("--threshold must be > 1")
    try:
        if not args.refresh and not args.baseline.exists():
            raise GateError(
                f"{args.baseline}: no baseline to compare with; create one with --refresh"
            )
        current_path = args.current or args.out
        if args.current is None:
            run_benchmarks(args.out)
        current = load(current_path)
        if args.refresh:
            return refresh(args.baseline, current_path, current, args.threshold)
        baseline = load(args.baseline)
        rows = compare(baseline, current, args.threshold)
        slow = [
            r.benchmark for r in rows if r.verdict == "REGRESSED" and r.measure.startswith("time")
        ]
        if slow and args.current is None:
            print(
                f"gate: {', '.join(slow)} slower than the baseline; measuring again",
                file=sys.stderr,
            )
            again = args.out.with_name(args.out.stem + "-again.json")
            run_benchmarks(again, slow)
            best = best_of(
                calibrated(current, "current run"), calibrated(load(again), "the re-measure")
            )
            rows = compare(baseline, current, args.threshold, best)
    except GateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(rows))
    failed = [r for r in rows if r.fails]
    if failed:
        print(
            f"\ngate FAILED: {len(failed)} regression(s) against {args.baseline}"
            f" (times: more than {args.threshold:g}x the baseline in calibration-loop units;"
            " counters: any increase)",
            file=sys.stderr,
        )
        return 1
    print(f"\ngate passed against {args.baseline}", file=sys.stderr)
    return 0


def refresh(baseline: Path, current_path: Path, current: dict[str, Bench], threshold: float) -> int:
    if baseline.exists():
        print(table(compare(load(baseline), current, threshold)))
    baseline.parent.mkdir(parents=True, exist_ok=True)
    if current_path.resolve() != baseline.resolve():
        shutil.copyfile(current_path, baseline)
    print(f"\nbaseline refreshed: {baseline} (commit it, saying why)", file=sys.stderr)
    return 0
