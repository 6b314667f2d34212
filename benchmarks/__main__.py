"""Regenerate BENCHMARKS.md: every benchmark script run once, its output stamped with the host.

    python -m benchmarks --quick                 # the short versions (~20 min on 2 cores)
    python -m benchmarks --full                  # what the issues' targets are measured with (hours)
    python -m benchmarks --quick --only train,targets   # those sections replaced, the others kept
    python -m benchmarks --list

Each section is one script run as its own process (a crash or a timeout is written into the
section instead of being skipped), stamped with the CPU model and flags, core count, date, commit
and the exact command. BENCHMARKS.md holds current results only; what it held before goes to the
top of BENCHMARKS-history.md (once per regeneration, dated), so older hosts and commits stay
readable without being mistaken for the current numbers. Run it on an idle machine: every script
times things, and a busy machine makes them slower and noisier (the stamp records the load).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"^<!-- section: ([a-z0-9-]+) -->$", re.M)


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    what: str


SECTIONS = (
    Section("targets", "One fp32 model on every runtime", "targets.py", (), (),
            "ResNet-18 224 and digits-resnet18 on torch eager, ONNX Runtime and OpenVINO, side by side."),
    Section("train", "Training: time to accuracy, precision, distillation", "train.py",
            ("--seeds", "0", "--skip-distill", "--skip-precision"),
            ("--seeds", "0", "1", "2"),
            "`slimkit train --until 98` against a plain PyTorch loop (issue 26's target: <= 0.77x its time)."),
    Section("quantize", "Quantization", "quantize.py", ("--parts", "resnet18"), (),
            "int8 (static, dynamic, OpenVINO/NNCF, torchao) against torch fp32 eager in one process."),
    Section("prune", "Structured pruning", "prune.py", ("--only", "resnet18", "--r18-epochs", "2"), (),
            "50% of the channels of digits-resnet18 (and MiniLM's heads and neurons with --full)."),
    Section("minilm-arch", "MiniLM's pruned architecture on each runtime", "minilm_arch.py", (), (),
            "Latency bounds for the MiniLM part of the search, before any training."),
    Section("search", "Joint search", "search.py", ("--parts", "resnet18", "--minutes", "4"), (),
            "`slimkit.optimize` on digits-resnet18 against NNCF int8 alone (30 minutes per part with --full)."),
    Section("your-model", "Your model in, your model out", "your_model.py", (), (),
            "One call on a user's own model and data."),
    Section("user-models", "Coverage: torchvision and Hugging Face models", "user_models.py",
            ("--torchvision", "--limit", "6", "--timeout", "300"), ("--torchvision", "--hf", "--timeout", "900"),
            "int8 through `slimkit.quantize` on other people's models, each in its own process."),
)


def host_stamp() -> str:
    """CPU model, its vector/matrix flags, cores, load, date and commit, for a section's header."""
    sys.path.insert(0, str(ROOT / "src"))
    from slimkit.measure.env import cpu_info

    cpu = cpu_info()
    flags = " ".join(cpu.get("flags", [])) if isinstance(cpu.get("flags"), list) else str(cpu.get("flags", ""))
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Host: {cpu.get('model', '?')}, {os.cpu_count()} cores ({flags or 'no flags read'}); "
            f"load {load:.2f} at the start; {date}; commit {commit}")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def run_section(section: Section, full: bool, timeout: float) -> str:
    """The section's markdown: title, stamp, command, then the script's output (or why there is none)."""
    args = section.full if full else section.quick
    cmd = [sys.executable, f"benchmarks/{section.script}", *args]
    shown = "python " + " ".join(shlex.quote(a) for a in cmd[1:])
    stamp = host_stamp()
    print(f"[benchmarks] {section.name}: {shown}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        body, code, err = proc.stdout.strip(), proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        body = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, err = None, f"timed out after {timeout:.0f} s"
    took = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(str(err).strip().splitlines()[-8:])
        body += f"\n\n**This run did not finish** ({'exit ' + str(code) if code is not None else err}):\n\n" \
                f"```\n{tail}\n```"
    print(f"[benchmarks] {section.name}: {'ok' if code == 0 else 'FAILED'} in {took / 60:.1f} min",
          file=sys.stderr, flush=True)
    return (f"<!-- section: {section.name} -->\n## {section.title}\n\n{section.what}\n\n"
            f"{stamp}; took {took / 60:.1f} min.\n\nCommand: `{shown}`\n\n{_demote(body)}\n")


def _demote(body: str) -> str:
    """Scripts print their own '#'/'##' headings: nest them under the section's."""
    return re.sub(r"^(#{1,2}) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", body, flags=re.M)


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """BENCHMARKS.md's preamble and its marked sections by name."""
    marks = list(MARK.finditer(text))
    if not marks:
        return text, {}
    sections = {m.group(1): text[m.start(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].rstrip() + "\n"
                for i, m in enumerate(marks)}
    return text[: marks[0].start()], sections


HEADER = """# Benchmarks

Current results only, regenerated by `python -m benchmarks --quick` (or `--full`, what the issues' targets
are stated for); `python -m benchmarks --quick --only NAME` replaces one section. Each section says the host,
the date, the commit and the exact command it came from; timings are from one run on the machine named,
with ratios measured side by side in one process. Earlier results, from other hosts and commits, are in
[BENCHMARKS-history.md](BENCHMARKS-history.md).

"""


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short versions of every benchmark (default)")
    mode.add_argument("--full", action="store_true", help="the versions the issues' targets are measured with")
    ap.add_argument("--only", default="", help="comma-separated section names (see --list)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per section")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for s in SECTIONS:
            print(f"{s.name:12} benchmarks/{s.script}: {s.what}")
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {s.name for s in SECTIONS})
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    preamble, kept = split_sections(old)
    if old and not kept:  # a hand-written notebook from before: keep it whole, in the history
        _to_history(out, old)
    fresh = {s.name: run_section(s, args.full, args.timeout) for s in SECTIONS if not names or s.name in names}
    if kept and fresh:
        _to_history(out, "".join(kept[n] for n in fresh if n in kept))
    merged = {s.name: fresh.get(s.name) or kept.get(s.name) for s in SECTIONS}
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(HEADER + "\n".join(v for v in merged.values() if v))
    tmp.replace(out)
    print(f"[benchmarks] wrote {out} ({len(fresh)} section(s) regenerated)", file=sys.stderr)
    return 0


def _to_history(out: Path, text: str) -> None:
    """Prepend what is being replaced to the history file, dated."""
    history = out.with_name("BENCHMARKS-history.md")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    before = history.read_text() if history.exists() else "# Benchmark history\n\nEarlier results, newest first.\n\n"
    head, sep, rest = before.partition("\n\n## ")
    entry = f"## Replaced on {date}\n\n{_demote(text.strip())}\n"
    history.write_text(f"{head}\n\n{entry}\n" + (f"## {rest}" if sep else ""))


if __name__ == "__main__":
    sys.exit(main())
