"""The rehearsal report as text for a terminal."""

from __future__ import annotations

from collections import Counter

from tootstack_dev.rehearsal.runner import RehearsalReport


def render_text(report: RehearsalReport) -> str:
    lines = [f"tootstack rehearsal of stack {report.stack_name}", ""]
    by_type = Counter(r["type"] or "(moto listed no type: SAM-generated)" for r in report.resources)
    lines.append(f"Resources created in the emulation: {len(report.resources)}")
    lines += [f"  {count:4d}  {rtype}" for rtype, count in sorted(by_type.items())]
    lines.append("")
    lines.append(f"Resources moto skipped, and what stands in for them: {len(report.skipped_resources)}")
    lines += [f"  {s['logical_id']} ({s['type']}): {s['stand_in']}" for s in report.skipped_resources]
    lines.append("")
    lines.append("Stages:")
    width = max((len(s.name) for s in report.stages), default=5)
    for stage in report.stages:
        lines.append(f"  {stage.status.upper():8s} {stage.name:<{width}}  {stage.seconds:6.1f}s  {stage.detail}")
    lines.append("")
    verdict = "OK" if report.ok else "FAILED"
    failed = [s.name for s in report.stages if s.status != "ok"]
    lines.append(f"Rehearsal {verdict} in {report.seconds:.1f}s" + (f" (not ok: {', '.join(failed)})" if failed else ""))
    return "\n".join(lines)
