#!/usr/bin/env python3
"""Benchmark: our copier (`tootstack mirror`) vs `skopeo copy --all`, same images, same two local registries.

Generated images of several shapes sit in a token-auth "Docker Hub" registry: single-platform (a plain
manifest) and two-platform (an OCI index), each with small layers (4 MiB + 1 MiB + 256 KiB per platform)
or a large one (`--layer-mb`, default 48 MiB, + 4 MiB + 512 KiB), and a single-platform image of many
small layers (16 x 256 KiB). Each run copies each shape into a
fresh basic-auth "ECR" registry, cold, then again warm. Both tools run as child processes: wall time,
CPU, peak RSS (the child's VmHWM) and the GET requests the source registry served (its access log) are
recorded; the tools take turns in a rotating order so machine load hits them alike. Prints per shape the
medians and the ratios ours/skopeo. Targets: cold <= 0.8x, warm <= 1.0x with 0 source GETs, peak RSS
<= 64 MiB at any layer size (`--layer-mb 1024`).

"ours" is the command as an operator's scheduled job runs it: `bin/tootstack-mirror`, with the interpreter
options of its `#!` line, on this interpreter (`sys.executable`: a version manager's `python3` shim on PATH
would add its own start-up, a shell script, to every run).

`--compare DIR` adds a third tool, "before": an older tree (e.g. `git archive main layers/tootstack dev |
tar -x -C DIR`) run as its own operator would, `DIR/bin/tootstack-mirror` when the tree has one, else
`python -m tootstack_dev.mirror` with DIR/layers/tootstack and DIR/dev first on PYTHONPATH, interleaved
with the others in the same run.

    python bench/mirror.py                          # 5 shapes, 5 runs each, a few minutes
    python bench/mirror.py --shapes 2p-large --layer-mb 1024 --runs 2
    mkdir -p /tmp/before && git archive main layers/tootstack dev | tar -x -C /tmp/before
    python bench/mirror.py --compare /tmp/before
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tootstack_dev.local.images import DEFAULT_PLATFORMS, push_image
from tootstack_dev.local.registry import Registry
from tootstack_dev.local.skopeo import policy_file, skopeo_copy_argv, skopeo_env
from tootstack.mirror.copier import mirror_image

MIB = 1 << 20
CPU = [0.0]   # CPU seconds (user + system) of the last child run


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of one child process; raises on failure.

    Peak RSS is the child's own VmHWM, sampled from /proc every 2 ms until it exits: wait4's
    ru_maxrss would also count the benchmark's own memory, which a forked child inherits before exec."""
    started = time.perf_counter()
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=env)
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.returncode is None and Path(f"/proc/{proc.pid}").exists() and _alive(proc.pid):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except (OSError, ValueError):
                pass
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)            # CPU times are the child's own (not inherited at fork)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    sampler.join()
    CPU[0] = usage.ru_utime + usage.ru_stime
    errors.seek(0)
    err = errors.read()
    errors.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-600:]}")
    return wall, peak[0], out.decode()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


SMALL = [4 * MIB, 1 * MIB, 256 * 1024]
MANY = [256 * 1024] * 16
SHAPES = ("1p-small", "1p-large", "2p-small", "2p-large", "1p-many")
ROOT = Path(__file__).resolve().parent.parent
TAG = "v4.5.2"


def shape_spec(shape: str, layer_mb: int) -> tuple[tuple[str, ...], bool, list[int]]:
    """(platforms, index?, layer sizes per platform) of a shape name."""
    platforms, size = shape.split("-")
    layers = {"small": SMALL, "many": MANY}.get(size) or [layer_mb * MIB, 4 * MIB, 512 * 1024]
    return (DEFAULT_PLATFORMS, True, layers) if platforms == "2p" else (DEFAULT_PLATFORMS[:1], False, layers)


def command(tree: Path) -> list[str]:
    """How an operator runs the mirror command of `tree`: bin/tootstack-mirror with its `#!` line's interpreter
    options on this interpreter, or (an older tree without it) `python -m tootstack_dev.mirror`."""
    script = tree / "bin" / "tootstack-mirror"
    if not script.exists():
        return [sys.executable, "-m", "tootstack_dev.mirror"]
    shebang = script.read_text().splitlines()[0].split()
    options = shebang[shebang.index(next(w for w in shebang if w.startswith("python"))) + 1:]
    return [sys.executable, *options, str(script)]


def ours_argv(hub: Registry, ecr: Registry, repo: str, src_repo: str, tree: Path = ROOT) -> list[str]:
    return [*command(tree), "--plain-http", "--json", f"{hub.host_port}/{src_repo}:{TAG}", f"{ecr.host_port}/{repo}:{TAG}"]


def ours_env(hub: Registry, ecr: Registry, tree: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["TOOTSTACK_SRC_CREDS"], env["TOOTSTACK_DEST_CREDS"] = hub.creds or "", ecr.creds or ""
    if tree is not None:
        paths = [str(tree / "layers" / "tootstack"), str(tree / "dev"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def measure(tool: str, hub: Registry, ecr: Registry, repo: str, src_repo: str, home: Path,
            compare: str | None = None) -> dict[str, float]:
    mark = hub.mark()
    if tool in ("ours", "before"):
        tree = Path(compare) if tool == "before" and compare else None
        wall, rss, out = run_child(ours_argv(hub, ecr, repo, src_repo, tree or ROOT), ours_env(hub, ecr, tree))
        json.loads(out)
    else:
        argv = skopeo_copy_argv(f"{hub.host_port}/{src_repo}:{TAG}", f"{ecr.host_port}/{repo}:{TAG}",
                                hub.creds, ecr.creds, policy_file(home))
        wall, rss, _ = run_child(argv, skopeo_env(home))
    return {"wall": wall, "rss": rss, "cpu": CPU[0], **source_reads(hub, mark)}


def source_reads(hub: Registry, mark: int) -> dict[str, float]:
    """GET and HEAD requests the source registry served since `mark`."""
    served = hub.requests_since(mark)
    return {"gets": sum(1 for m, _, _ in served if m == "GET"), "heads": sum(1 for m, _, _ in served if m == "HEAD")}


def in_process(hub: Registry, ecr: Registry, src_repo: str) -> dict[str, float]:
    mark = hub.mark()
    t0 = time.perf_counter()
    mirror_image(f"{hub.host_port}/{src_repo}:{TAG}", f"{ecr.host_port}/mastodon:{TAG}",
                 src_creds=(hub.username or "", hub.password or ""), dest_creds=(ecr.username or "", ecr.password or ""),
                 plain_http=True)
    return {"wall": time.perf_counter() - t0, "rss": 0, "cpu": 0.0, **source_reads(hub, mark)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer-mb", type=int, default=48, help="large layer size per platform in MiB (default 48; 1024 for the 1 GiB case)")
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and shape (default 5)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {', '.join(SHAPES)}")
    parser.add_argument("--compare", metavar="DIR", help="also run `before`: the mirror command of an older tree "
                        "(DIR holds its layers/tootstack and dev)")
    parser.add_argument("--in-process", action="store_true", help="also time the library called in this process (copy work alone)")
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}")
    if args.compare and not (Path(args.compare) / "layers" / "tootstack" / "tootstack").is_dir():
        parser.error(f"--compare {args.compare}: no layers/tootstack/tootstack there (the root of an older tree)")

    # Bytecode for the code under test, as `pip install` (or `make setup`) writes it: with PYTHONDONTWRITEBYTECODE
    # set, as on this VM, every run would otherwise compile our modules from source again.
    trees = [ROOT] + ([Path(args.compare)] if args.compare else [])
    for tree in trees:
        for package in (tree / "layers" / "tootstack" / "tootstack", tree / "dev" / "tootstack_dev"):
            compileall.compile_dir(str(package), quiet=1)
    tools = ["ours", "skopeo"] + (["before"] if args.compare else []) + (["in-process"] if args.in_process else [])
    results = {shape: {t: {"cold": [], "warm": []} for t in tools} for shape in shapes}
    started = time.perf_counter()
    with Registry(auth="token") as hub, tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        for shape in shapes:
            platforms, index, layers = shape_spec(shape, args.layer_mb)
            t0 = time.perf_counter()
            pushed = push_image(hub, f"mastodon/{shape}", TAG, layers, platforms=platforms, index=index)
            results[shape]["image"] = pushed  # type: ignore[assignment]
            print(f"{shape}: {pushed.digest[:19]} {pushed.media_type.rsplit('.', 2)[-2]}, {len(platforms)} platform(s), "
                  f"{len(pushed.blobs)} blobs, {pushed.total_bytes / MIB:.1f} MiB, pushed in {time.perf_counter() - t0:.1f}s")
        for run in range(args.runs):
            for shape in shapes:
                pushed = results[shape]["image"]  # type: ignore[assignment]
                order = tools[run % len(tools):] + tools[:run % len(tools)]
                for tool in order:
                    src_repo = f"mastodon/{shape}"
                    with Registry(auth="basic") as ecr:       # a fresh destination per cold copy
                        if tool == "in-process":
                            cold, warm = (in_process(hub, ecr, src_repo) for _ in range(2))
                        else:
                            cold = measure(tool, hub, ecr, "mastodon", src_repo, Path(tmp), args.compare)
                            warm = measure(tool, hub, ecr, "mastodon", src_repo, Path(tmp), args.compare)
                        with ecr.client() as client:
                            head = client.head(f"/v2/mastodon/manifests/{TAG}", headers={"Accept": pushed.media_type})
                        assert head.headers.get("docker-content-digest") == pushed.digest, f"{tool}: wrong digest in destination"
                    results[shape][tool]["cold"].append(cold)
                    results[shape][tool]["warm"].append(warm)
                    print(f"run {run + 1} {shape} {tool:10s} cold {cold['wall']:6.3f}s cpu {cold['cpu']:5.2f}s rss {cold['rss'] / MIB:6.1f} MiB "
                          f"GET {cold['gets']:3.0f} | warm {warm['wall']:6.3f}s rss {warm['rss'] / MIB:6.1f} MiB GET {warm['gets']:3.0f} "
                          f"HEAD {warm['heads']:3.0f}", flush=True)

    print()
    print(f"medians of {args.runs} runs; ratios against skopeo copy --all measured in the same run")
    print(f"{'shape':10s}{'tool':12s}{'cold s':>9s}{'warm s':>9s}{'cold CPU s':>11s}{'warm CPU s':>11s}{'peak RSS MiB':>13s}"
          f"{'warm GETs':>10s}{'cold x':>8s}{'warm x':>8s}{'CPU cold x':>11s}{'CPU warm x':>11s}")
    verdicts = []
    for shape in shapes:
        def med(tool: str, phase: str, key: str) -> float:
            return statistics.median(r[key] for r in results[shape][tool][phase])

        def peak(tool: str) -> float:
            return max(r["rss"] for phase in ("cold", "warm") for r in results[shape][tool][phase]) / MIB

        for tool in tools:
            cold_x = med(tool, "cold", "wall") / med("skopeo", "cold", "wall")
            warm_x = med(tool, "warm", "wall") / med("skopeo", "warm", "wall")
            cpu_x = [med(tool, phase, "cpu") / max(med("skopeo", phase, "cpu"), 1e-3) for phase in ("cold", "warm")]
            print(f"{shape:10s}{tool:12s}{med(tool, 'cold', 'wall'):9.3f}{med(tool, 'warm', 'wall'):9.3f}"
                  f"{med(tool, 'cold', 'cpu'):11.3f}{med(tool, 'warm', 'cpu'):11.3f}{peak(tool):13.1f}"
                  f"{med(tool, 'warm', 'gets'):10.0f}{cold_x:8.2f}{warm_x:8.2f}{cpu_x[0]:11.2f}{cpu_x[1]:11.2f}")
            if tool == "ours":
                verdicts.append((shape, cold_x, warm_x, med(tool, "warm", "gets"), peak(tool)))
    print()
    for shape, cold_x, warm_x, gets, rss in verdicts:
        ok = cold_x <= 0.8 and warm_x <= 1.0 and gets == 0 and rss <= 64
        print(f"{shape}: ours/skopeo cold {cold_x:.2f}x (target <= 0.8), warm {warm_x:.2f}x (target <= 1.0), "
              f"warm source GETs {gets:.0f} (target 0), peak RSS {rss:.1f} MiB (target <= 64): {'met' if ok else 'NOT met'}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work skews wall times; "
          "CPU x = the tools' own user+system time, which load does not inflate); "
          f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
