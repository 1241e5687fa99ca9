#!/usr/bin/env python3
"""Benchmark: our copier (`tootstack mirror`) vs `skopeo copy --all`, same image, same two local registries.

A generated two-platform image (per platform: one big layer plus two small ones) sits in a token-auth
"Docker Hub" registry; each run copies it into a fresh basic-auth "ECR" registry, cold, then again
warm. Both tools run as child processes: wall time, peak RSS (ru_maxrss from wait4) and the GET
requests the source registry served (its access log) are recorded. Prints medians and ratios
ours/skopeo. Targets (issue 4): cold <= 0.8x, warm <= 1.0x with 0 source GETs, peak RSS <= 64 MB
with a 1 GB layer (`--layer-mb 1024`).

    python bench/mirror.py                 # 48 MiB big layer, 3 runs, well under 2 minutes
    python bench/mirror.py --layer-mb 1024 --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tootstack.local.images import push_image
from tootstack.local.registry import Registry
from tootstack.local.skopeo import policy_file, skopeo_copy_argv, skopeo_env
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


def ours_argv(hub: Registry, ecr: Registry, repo: str) -> list[str]:
    return [sys.executable, "-m", "tootstack.mirror", "--plain-http", "--json",
            f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/{repo}:v4.5.2"]


def ours_env(hub: Registry, ecr: Registry) -> dict[str, str]:
    env = dict(os.environ)
    env["TOOTSTACK_SRC_CREDS"], env["TOOTSTACK_DEST_CREDS"] = hub.creds or "", ecr.creds or ""
    return env


def measure(tool: str, hub: Registry, ecr: Registry, repo: str, home: Path) -> dict[str, float]:
    mark = hub.mark()
    if tool == "ours":
        wall, rss, out = run_child(ours_argv(hub, ecr, repo), ours_env(hub, ecr))
        json.loads(out)
    else:
        argv = skopeo_copy_argv(f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/{repo}:v4.5.2",
                                hub.creds, ecr.creds, policy_file(home))
        wall, rss, _ = run_child(argv, skopeo_env(home))
    return {"wall": wall, "rss": rss, "cpu": CPU[0], **source_reads(hub, mark)}


def source_reads(hub: Registry, mark: int) -> dict[str, float]:
    """GET and HEAD requests the source registry served since `mark`."""
    served = hub.requests_since(mark)
    return {"gets": sum(1 for m, _, _ in served if m == "GET"), "heads": sum(1 for m, _, _ in served if m == "HEAD")}


def in_process(hub: Registry, ecr: Registry) -> dict[str, float]:
    mark = hub.mark()
    t0 = time.perf_counter()
    mirror_image(f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon:v4.5.2",
                 src_creds=(hub.username or "", hub.password or ""), dest_creds=(ecr.username or "", ecr.password or ""),
                 plain_http=True)
    return {"wall": time.perf_counter() - t0, "rss": 0, **source_reads(hub, mark)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer-mb", type=int, default=48, help="big layer size per platform in MiB (default 48; 1024 for the 1 GB case)")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool (default 3)")
    args = parser.parse_args()

    results: dict[str, dict[str, list[dict[str, float]]]] = {t: {"cold": [], "warm": []} for t in ("ours", "skopeo")}
    started = time.perf_counter()
    with Registry(auth="token") as hub, tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [args.layer_mb * MIB, 4 * MIB, 512 * 1024])
        print(f"image {pushed.digest}: 2 platforms, {len(pushed.blobs)} blobs, {pushed.total_bytes / MIB:.1f} MiB "
              f"(big layer {args.layer_mb} MiB per platform), pushed in {time.perf_counter() - started:.1f}s")
        # "ours (in-process)": the library called in this process, i.e. the copy work alone without interpreter
        # start-up and imports. The three rotate order from run to run so load drifts hit them alike.
        results["ours (in-process)"] = {"cold": [], "warm": []}
        tools = ("ours", "skopeo", "ours (in-process)")
        for run in range(args.runs):
            order = tools[run % 3:] + tools[:run % 3]
            for tool in order:
                with Registry(auth="basic") as ecr:       # a fresh destination per cold copy
                    if tool == "ours (in-process)":
                        cold, warm = (in_process(hub, ecr) for _ in range(2))
                    else:
                        cold = measure(tool, hub, ecr, "mastodon", Path(tmp))
                        warm = measure(tool, hub, ecr, "mastodon", Path(tmp))
                    with ecr.client() as client:
                        head = client.head("/v2/mastodon/manifests/v4.5.2", headers={"Accept": pushed.media_type})
                    assert head.headers.get("docker-content-digest") == pushed.digest, f"{tool}: wrong digest in destination"
                results[tool]["cold"].append(cold)
                results[tool]["warm"].append(warm)
                if tool != "ours (in-process)":
                    print(f"run {run + 1} {tool:6s} cold {cold['wall']:6.2f}s cpu {cold['cpu']:5.2f}s rss {cold['rss'] / MIB:6.1f} MiB GET {cold['gets']:3.0f} | "
                          f"warm {warm['wall']:6.3f}s rss {warm['rss'] / MIB:6.1f} MiB GET {warm['gets']:3.0f} HEAD {warm['heads']:3.0f}")
                else:
                    print(f"run {run + 1} ours in-process cold {cold['wall']:6.2f}s | warm {warm['wall']:6.3f}s GET {warm['gets']:3.0f}")
        t0 = time.perf_counter()
        run_child([sys.executable, "-c", "import sys; [sys.modules.setdefault(m, None) for m in ('anyio', 'trio', 'httpx._main')]; "
                   "import tootstack.mirror.copier as c; c.RegistryClient('127.0.0.1:1', plain_http=True)"])
        startup = time.perf_counter() - t0

    def med(tool: str, phase: str, key: str) -> float:
        return statistics.median(r[key] for r in results[tool][phase])

    def peak(tool: str) -> float:
        return max(r["rss"] for phase in ("cold", "warm") for r in results[tool][phase]) / MIB

    print()
    print(f"{'':8s}{'cold s':>9s}{'warm s':>9s}{'cold CPU s':>12s}{'peak RSS MiB':>14s}{'src GETs cold':>15s}{'src GETs warm':>15s}")
    for tool in ("ours", "skopeo", "ours (in-process)"):
        if tool == "ours (in-process)":
            print(f"{'ours, copy work only (library in-process; no RSS)':s}: cold {med(tool, 'cold', 'wall'):.2f}s, "
                  f"warm {med(tool, 'warm', 'wall'):.3f}s, source GETs warm {med(tool, 'warm', 'gets'):.0f}; "
                  f"python start-up + imports + client alone: {startup:.2f}s")
            continue
        print(f"{tool:8s}{med(tool, 'cold', 'wall'):9.2f}{med(tool, 'warm', 'wall'):9.3f}{med(tool, 'cold', 'cpu'):12.2f}{peak(tool):14.1f}"
              f"{med(tool, 'cold', 'gets'):15.0f}{med(tool, 'warm', 'gets'):15.0f}")
    cold_ratio = med("ours", "cold", "wall") / med("skopeo", "cold", "wall")
    warm_ratio = med("ours", "warm", "wall") / med("skopeo", "warm", "wall")
    print(f"ratio ours/skopeo (median of {args.runs}): cold {cold_ratio:.2f}x (target <= 0.8), warm {warm_ratio:.2f}x "
          f"(target <= 1.0); ours warm source GETs {med('ours', 'warm', 'gets'):.0f} (target 0); "
          f"ours peak RSS {peak('ours'):.1f} MiB (target <= 64 with a 1 GB layer)")
    print(f"in-process ratios (copy work vs skopeo's whole run): cold "
          f"{med('ours (in-process)', 'cold', 'wall') / med('skopeo', 'cold', 'wall'):.2f}x, warm "
          f"{med('ours (in-process)', 'warm', 'wall') / med('skopeo', 'warm', 'wall'):.2f}x")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work skews wall times)")
    print(f"total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
