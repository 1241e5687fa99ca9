#!/usr/bin/env python3
"""Benchmark: cold import of every Lambda handler (`functions/*/app.py`) against a bare `import boto3`.

What a Lambda cold start pays before the first event is the import of the handler module: each
measurement is a fresh interpreter (`python -c` with the handler's directory and the layer on the path,
the function's Globals environment), timing only the import inside that process, so interpreter
start-up is left out of both sides. The best of N per handler is compared with the best of N of a bare
`import boto3` measured in the same run, interleaved, so machine load hits both alike. Target: every
handler <= 2.0x.

    python bench/lambda_imports.py [--runs 5] [--only crashloop_detector]
    python bench/lambda_imports.py --compare /tmp/before    # also an older tree (git archive of functions/ and
                                                            # layers/tootstack), interleaved in the same run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "tootstack"
TARGET = 2.0

# The Globals environment of template.yaml plus what the Lambda runtime sets; handler-specific
# variables are read when an event arrives, not at import.
ENV = {
    "POWERTOOLS_SERVICE_NAME": "tootstack", "POWERTOOLS_METRICS_NAMESPACE": "tootstack", "STACK_NAME": "bench",
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "LAMBDA_TASK_ROOT": "", "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105 - fake credentials, never sent anywhere
}

PROBE = """
import sys, time, json
t0, c0 = time.perf_counter(), time.process_time()
{statement}
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "modules": len(sys.modules)}}))
"""


def measure(statement: str, cwd: Path, layer: Path = LAYER) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(ENV)
    env["LAMBDA_TASK_ROOT"] = str(cwd)
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(layer)])
    proc = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{statement} in {cwd}: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per handler; the best counts (default 5)")
    parser.add_argument("--only", action="append", default=[], help="handler directory name (repeatable)")
    parser.add_argument("--compare", metavar="DIR", help="also measure DIR/functions/*/app.py with DIR/layers/tootstack")
    args = parser.parse_args()
    before = Path(args.compare) if args.compare else None

    handlers = sorted(p.parent for p in (ROOT / "functions").glob("*/app.py"))
    if args.only:
        handlers = [h for h in handlers if h.name in args.only]
    best: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for _ in range(args.runs):
        # boto3 first in every round, then each handler: a load spike hits one round, not one side
        runs = [("import boto3", "import boto3", ROOT, LAYER)] + [(h.name, "import app", h, LAYER) for h in handlers]
        if before is not None:
            runs += [(f"before {h.name}", "import app", before / "functions" / h.name, before / "layers" / "tootstack")
                     for h in handlers if (before / "functions" / h.name / "app.py").exists()]
        for name, statement, cwd, layer in runs:
            result = measure(statement, cwd, layer)
            if name not in best:
                best[name] = result
            best[name] = {key: min(best[name][key], result[key]) for key in result}   # best of N, each figure
    reference, reference_cpu = best["import boto3"]["seconds"], best["import boto3"]["cpu"]

    def row(name: str, figures: dict[str, float]) -> str:
        return (f"{figures['seconds']:7.3f} {figures['seconds'] / reference:5.2f}x {figures['cpu']:7.3f} "
                f"{figures['cpu'] / reference_cpu:5.2f}x {figures['modules']:6.0f}")

    heading = f"{'':22s}{'wall s':>8s}{'ratio':>7s}{'CPU s':>8s}{'ratio':>7s}{'modules':>8s}"
    print(heading + ("   | before:" + heading[22:] if before else ""))
    print(f"{'import boto3':22s}{row('import boto3', best['import boto3'])}")
    worst = worst_cpu = 0.0
    for h in handlers:
        ratio, cpu_ratio = best[h.name]["seconds"] / reference, best[h.name]["cpu"] / reference_cpu
        worst, worst_cpu = max(worst, ratio), max(worst_cpu, cpu_ratio)
        old = best.get(f"before {h.name}")
        flag = "" if max(ratio, cpu_ratio) <= TARGET else f"  above {TARGET}x"
        print(f"{h.name:22s}{row(h.name, best[h.name])}" + (f"   | {row(h.name, old)}" if old else "") + flag)
    print(f"worst handler: {worst:.2f}x `import boto3` wall, {worst_cpu:.2f}x CPU (target <= {TARGET}x), best of "
          f"{args.runs}; ratios are to the reference in this run (CPU time is not inflated by other work); "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
