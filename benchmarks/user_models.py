"""Your model in, your model out: slimkit's one-call int8 on users' own models, unlabelled data.

    python benchmarks/user_models.py --torchvision [--timeout 300] [--budget-minutes 55] [--models a,b] [--limit N]
    python benchmarks/user_models.py --hf [--archs bert,vit] [--timeout 300]
    python benchmarks/user_models.py --torchvision --hf --out runs/bench-user-models

What it measures, per model and target (onnxruntime, openvino), each model in its own process:

    r = slimkit.quantize(model, data, target=T, scheme="int8-static", out=DIR, quick=True, threads=2)
    p = r.load(f"{T}-int8-static")

``data`` is a plain list of input batches without labels (so the run's metric is top-1 agreement
with the original model); the artifact is then loaded back and called like the original model
on fresh inputs of a batch size the run never saw.

1. ``--torchvision``: every model of ``torchvision.models.list_models(module=torchvision.models)``
   with random weights (nothing can be downloaded here). Data: 6 batches of 8 random images
   (48 items) at 64x64, or the smallest side of (64, 75, 96, 128, 160, 224) the model's forward
   accepts (the ViTs and MaxViT need 224; the size used is in each line). Check: 4 batches of 5
   fresh random images through the loaded int8 artifact, top-1 agreement and mean cosine of the
   logits against the fp32 torch model. Models run smallest (weights file size) first; a model
   over ``--timeout`` seconds, or not started within ``--budget-minutes``, counts as a failure.
2. ``--hf``: small Hugging Face architectures built offline from configs (hidden 64, 2 layers,
   random weights): *ForSequenceClassification for text, *ForImageClassification for images,
   WhisperForAudioClassification for audio. Text data: dicts of input_ids and attention_mask,
   length 16, padded (random real lengths 4-16). The loaded fp32 and int8 artifacts are called at
   two other sequence lengths (7 and 29, padded too; batch 5); the table gives top-1 agreement
   with the torch model for both and the fp32 artifact's max abs difference.

Per model/target: success or the error (type + first line, and the innermost slimkit frame),
agreement %, seconds. Prints one line per model/target, the success rates and a markdown summary,
and writes everything as JSON under ``--out`` (results.json per part).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

TARGETS = ("onnxruntime", "openvino")
SIDES = (64, 75, 96, 128, 160, 224)  # tried in order: the first the model's forward accepts
N_BATCHES, BATCH = 6, 8  # data given to slimkit.quantize: 48 items
CHECK_BATCH, CHECK_CALLS = 5, 4  # fresh inputs for the loaded artifact: a batch size the run never used
SEQ, CHECK_SEQS = 16, (7, 29)


# --------------------------------------------------------------------------------------------- helpers

def _error(exc: BaseException) -> dict[str, str]:
    """The error's type and first line, and where in slimkit (innermost slimkit frame) it came from."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/slimkit/" in f.filename.replace("\\", "/")]
    at = mine[-1] if mine else (frames[-1] if frames else None)
    where = f"{at.filename.split('/src/')[-1]}:{at.lineno} ({at.name})" if at else ""
    last = f"{frames[-1].filename.split('site-packages/')[-1]}:{frames[-1].lineno}" if frames else ""
    return {"error": f"{type(exc).__name__}: {first}", "where": where, "raised_at": last}


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"cannot read logits from {type(out).__name__}")


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean() * 100)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=1).mean())


def _run_children(names: list[str], part: str, args: argparse.Namespace, out: Path,
                  budget_s: float | None) -> list[dict]:
    """Each name in its own process (time limit ``args.timeout``); results as one row per model/target."""
    rows: list[dict] = []
    start_all = time.time()
    for name in names:
        if budget_s is not None and time.time() - start_all > budget_s:
            rows += [{"model": name, "target": t, "ok": False, "status": "not run",
                      "error": f"not started: the part's {budget_s / 60:.0f}-minute budget was spent"}
                     for t in TARGETS]
            print(f"SKIP  {name:24s} budget spent", flush=True)
            continue
        log = out / "children" / f"{name}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--child", name, "--part", part, "--log", str(log),
               "--threads", str(args.threads), "--size", str(args.size), "--out", str(out)]
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            crash = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]
            if crash:
                crash = f"process exited with {proc.returncode}: {crash}"
        except subprocess.TimeoutExpired:
            crash = f"timeout: not finished within {args.timeout} s (counted as a failure)"
        done = {}
        if log.is_file():
            for line in log.read_text().splitlines():
                rec = json.loads(line)
                done[rec["target"]] = rec
        for t in TARGETS:
            rec = done.get(t) or {"model": name, "target": t, "ok": False,
                                  "status": "timeout" if crash and crash.startswith("timeout") else "crash",
                                  "error": crash or "no result written"}
            rows.append(rec)
            _print_row(rec)
        print(f"      {name:24s} {time.time() - t0:6.1f}s in all", flush=True)
    return rows


def _print_row(r: dict) -> None:
    if r["ok"]:
        extra = (f"agree {r['agreement']:6.1f}%  cos {r['cosine']:.4f}" if "agreement" in r else
                 " ".join(f"L{k} agree int8 {v['int8_agreement']:.0f}% fp32 {v['fp32_agreement']:.0f}% "
                          f"maxabs {v['fp32_max_abs']:.1e}" for k, v in r.get("lengths", {}).items()))
        print(f"OK    {r['model']:24s} {r['target']:11s} {r.get('seconds', 0):6.1f}s "
              f"in {r.get('input', '')}  {extra}  report {r.get('report_metric', '')}", flush=True)
    else:
        print(f"FAIL  {r['model']:24s} {r['target']:11s} {r.get('seconds', 0) or 0:6.1f}s {r['error']}"
              f"{'  @ ' + r['where'] if r.get('where') else ''}", flush=True)


def _quantize(model: torch.nn.Module, data: list, target: str, out: Path, threads: int):
    import slimkit

    return slimkit.quantize(model, data, target=target, scheme="int8-static", out=out, quick=True,
                            threads=threads)


def _report_fields(r) -> dict:
    cands = {c.id: c for c in r.candidates}
    return {"best": r.best, "candidates": sorted(cands),
            "report_metric": {k: round(c.measurement.metric, 2) for k, c in cands.items()}}


# --------------------------------------------------------------------------------------------- part 1

def _scale(ref: torch.Tensor) -> dict[str, float]:
    """How readable the random-weight model's top-1 is: its logits' size and the top-1/top-2 margin."""
    top2 = ref.float().topk(2, dim=1).values
    return {"torch_logit_absmax": float(ref.abs().max()),
            "torch_top2_margin_median": float((top2[:, 0] - top2[:, 1]).median())}


def _smallest_side(model: torch.nn.Module, preferred: int) -> int:
    sides = [preferred] + [s for s in SIDES if s > preferred]
    last: Exception | None = None
    for side in sides:
        try:
            with torch.no_grad():
                model(torch.randn(1, 3, side, side))
            return side
        except Exception as exc:  # too small for this architecture: try the next side
            last = exc
    raise RuntimeError(f"no input side in {sides} accepted: {last}")


def child_torchvision(name: str, args: argparse.Namespace, log: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    side = _smallest_side(model, args.size)
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(BATCH, 3, side, side, generator=g) for _ in range(N_BATCHES)]
    fresh = [torch.randn(CHECK_BATCH, 3, side, side, generator=g) for _ in range(CHECK_CALLS)]
    with torch.no_grad():
        ref = torch.cat([_logits(model(x)) for x in fresh])
    scale = _scale(ref)
    for target in TARGETS:
        t0 = time.time()
        rec: dict[str, Any] = {"model": name, "target": target, "input": f"3x{side}x{side}", **scale}
        stage = "quantize"
        try:
            r = _quantize(model, data, target, Path(args.out) / "runs" / f"{name}-{target}", args.threads)
            rec.update(_report_fields(r))
            stage = "load"
            p = r.load(f"{target}-int8-static")
            stage = "call"
            got = torch.cat([p(x) for x in fresh])
            if tuple(got.shape) != tuple(ref.shape):
                raise RuntimeError(f"output shape {tuple(got.shape)} != torch's {tuple(ref.shape)}")
            rec.update(ok=True, status="ok", agreement=_agreement(got, ref), cosine=_cosine(got, ref),
                       torch_classes=int(ref.argmax(1).unique().numel()))
        except Exception as exc:  # one line per failure, the run goes on
            rec.update(ok=False, status="error", stage=stage, **_error(exc))
        _record(log, rec, t0)


def _record(log: Path, rec: dict, started: float) -> None:
    """One model x target's result, timed, appended to the JSON Lines log as soon as it is known."""
    rec["seconds"] = round(time.time() - started, 1)
    with log.open("a") as f:
        f.write(json.dumps(rec) + "\n")


def part_torchvision(args: argparse.Namespace, out: Path) -> dict:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    total = len(names)
    if args.models:
        names = [n for n in args.models.split(",") if n]

    def size_mb(n: str) -> float:
        return float(list(torchvision.models.get_model_weights(n))[0].meta.get("_file_size", 1e9))

    names.sort(key=size_mb)
    if args.limit:
        names = names[:args.limit]
    print(f"part 1: {len(names)} of {total} torchvision models, smallest first, {args.timeout} s each, "
          f"budget {args.budget_minutes} min", flush=True)
    t0 = time.time()
    rows = _run_children(names, "tv", args, out, args.budget_minutes * 60)
    summary = _summary(rows, names, total)
    summary["wall_s"] = round(time.time() - t0, 1)
    return {"models": names, "rows": rows, "summary": summary}


# --------------------------------------------------------------------------------------------- part 2

def _small(cfg_cls, **kw):
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=5)
    base.update(kw)
    return cfg_cls(**base)


def hf_model(arch: str):
    """(model, kind, extra): a small random-weight HF model built offline from its config."""
    import transformers as tf

    torch.manual_seed(0)
    text = {
        "bert": lambda: tf.BertForSequenceClassification(_small(tf.BertConfig)),
        "distilbert": lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
            dim=64, n_layers=2, n_heads=2, hidden_dim=128, num_labels=5)),
        "roberta": lambda: tf.RobertaForSequenceClassification(_small(tf.RobertaConfig)),
        "albert": lambda: tf.AlbertForSequenceClassification(_small(tf.AlbertConfig, embedding_size=32)),
        "electra": lambda: tf.ElectraForSequenceClassification(_small(tf.ElectraConfig, embedding_size=32)),
        "mpnet": lambda: tf.MPNetForSequenceClassification(_small(tf.MPNetConfig)),
        "deberta-v2": lambda: tf.DebertaV2ForSequenceClassification(_small(tf.DebertaV2Config)),
        "xlm-roberta": lambda: tf.XLMRobertaForSequenceClassification(_small(tf.XLMRobertaConfig)),
        "camembert": lambda: tf.CamembertForSequenceClassification(_small(tf.CamembertConfig)),
        "mobilebert": lambda: tf.MobileBertForSequenceClassification(_small(
            tf.MobileBertConfig, embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32,
            num_feedforward_networks=1)),
        "gpt2": lambda: tf.GPT2ForSequenceClassification(tf.GPT2Config(
            n_embd=64, n_layer=2, n_head=2, num_labels=5, pad_token_id=0)),
    }
    image = {
        "vit": lambda: tf.ViTForImageClassification(_small(tf.ViTConfig, image_size=32, patch_size=8)),
        "convnext": lambda: tf.ConvNextForImageClassification(tf.ConvNextConfig(
            hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 2, 1], num_labels=5)),
        "swin": lambda: tf.SwinForImageClassification(tf.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
            num_labels=5)),
        "resnet": lambda: tf.ResNetForImageClassification(tf.ResNetConfig(
            hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1], embedding_size=16, num_labels=5)),
        "deit": lambda: tf.DeiTForImageClassification(_small(tf.DeiTConfig, image_size=32, patch_size=8)),
    }
    if arch in text:
        return text[arch]().eval(), "text", {}
    if arch in image:
        return image[arch]().eval(), "image", {"side": 32}
    if arch == "whisper":
        cfg = tf.WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                               num_mel_bins=16, max_source_positions=50, num_labels=5)
        return tf.WhisperForAudioClassification(cfg).eval(), "audio", {"mels": 16, "frames": 100}
    raise KeyError(arch)


HF_ARCHS = ("bert", "distilbert", "roberta", "albert", "electra", "mpnet", "deberta-v2", "xlm-roberta",
            "camembert", "mobilebert", "gpt2", "vit", "deit", "convnext", "swin", "resnet", "whisper")


def _text_batch(n: int, seq: int, vocab: int, g: torch.Generator, pad: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, min(vocab, 1000), (n, seq), generator=g)
    lengths = torch.randint(max(2, seq // 4), seq + 1, (n,), generator=g)
    lengths[0] = seq  # at least one item fills the length
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    return {"input_ids": ids, "attention_mask": mask}


def child_hf(arch: str, args: argparse.Namespace, log: Path) -> None:
    model, kind, extra = hf_model(arch)
    g = torch.Generator().manual_seed(1)
    if kind == "text":
        vocab = model.config.vocab_size
        pad = getattr(model.config, "pad_token_id", None) or 0
        data = [_text_batch(BATCH, SEQ, vocab, g, pad) for _ in range(N_BATCHES)]
        checks = {f"seq{s}": _text_batch(CHECK_BATCH, s, vocab, g, pad) for s in CHECK_SEQS}
        desc = f"ids+mask seq {SEQ}"
    elif kind == "image":
        s = extra["side"]
        data = [{"pixel_values": torch.randn(BATCH, 3, s, s, generator=g)} for _ in range(N_BATCHES)]
        checks = {"b5": {"pixel_values": torch.randn(CHECK_BATCH, 3, s, s, generator=g)}}
        desc = f"pixel_values 3x{s}x{s}"
    else:
        m, f = extra["mels"], extra["frames"]
        data = [{"input_features": torch.randn(BATCH, m, f, generator=g)} for _ in range(N_BATCHES)]
        checks = {"b5": {"input_features": torch.randn(CHECK_BATCH, m, f, generator=g)}}
        desc = f"input_features {m}x{f}"
    with torch.no_grad():
        refs = {k: _logits(model(**v)) for k, v in checks.items()}
    for target in TARGETS:
        t0 = time.time()
        rec: dict[str, Any] = {"model": arch, "target": target, "input": desc, "class": type(model).__name__}
        stage = "quantize"
        try:
            r = _quantize(model, data, target, Path(args.out) / "runs" / f"{arch}-{target}", args.threads)
            rec.update(_report_fields(r))
            stage = "load"
            preds = {"int8": r.load(f"{target}-int8-static"), "fp32": r.load(f"{target}-fp32")}
            stage = "call"
            lengths, errors = {}, {}
            for k, inputs in checks.items():
                try:
                    row = {}
                    for prec, p in preds.items():
                        got = p(inputs)
                        if tuple(got.shape) != tuple(refs[k].shape):
                            raise RuntimeError(f"{prec} output shape {tuple(got.shape)} != torch's "
                                               f"{tuple(refs[k].shape)}")
                        row[f"{prec}_agreement"] = _agreement(got, refs[k])
                        row[f"{prec}_max_abs"] = float((got.float() - refs[k]).abs().max())
                    lengths[k] = row
                except Exception as exc:  # a length the artifact does not take: recorded, the others go on
                    errors[k] = _error(exc)
            rec["lengths"] = lengths
            if errors:
                first = next(iter(errors.values()))
                rec.update(ok=False, status="error", stage=f"call at {', '.join(errors)}", call_errors=errors,
                           error=first["error"], where=first["where"], raised_at=first["raised_at"])
            else:
                rec.update(ok=True, status="ok")
        except Exception as exc:  # one line per failure, the run goes on
            rec.update(ok=False, status="error", stage=stage, **_error(exc))
        _record(log, rec, t0)


def part_hf(args: argparse.Namespace, out: Path) -> dict:
    import transformers

    names = [a for a in args.archs.split(",") if a] if args.archs else list(HF_ARCHS)
    print(f"part 2: {len(names)} Hugging Face architectures (transformers {transformers.__version__})", flush=True)
    t0 = time.time()
    rows = _run_children(names, "hf", args, out, None)
    summary = _summary(rows, names, len(names))
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["transformers"] = transformers.__version__
    return {"models": names, "rows": rows, "summary": summary}


# --------------------------------------------------------------------------------------------- summary

def _summary(rows: list[dict], names: list[str], total: int) -> dict:
    started = [n for n in names if any(r["model"] == n and r.get("status") != "not run" for r in rows)]
    s: dict[str, Any] = {"models_in_list": total, "models_asked": len(names), "models_run": len(started),
                         "not_run": [n for n in names if n not in started]}
    for t in TARGETS:
        mine = [r for r in rows if r["target"] == t]
        ok = [r for r in mine if r["ok"]]
        ran = [r for r in mine if r.get("status") != "not run"]
        s[t] = {"ok": len(ok), "of": len(mine), "rate": round(100 * len(ok) / max(1, len(mine)), 1),
                "of_run": len(ran), "rate_of_run": round(100 * len(ok) / max(1, len(ran)), 1)}
        ag = [r["agreement"] for r in ok if "agreement" in r]
        if ag:
            s[t].update(agreement_median=statistics.median(ag), agreement_min=min(ag),
                        agreement_min_model=min(ok, key=lambda r: r.get("agreement", 1e9))["model"])
    both = [n for n in names if all(r["ok"] for r in rows if r["model"] == n)]
    s["all_targets"] = {"ok": len(both), "of": len(names), "rate": round(100 * len(both) / max(1, len(names)), 1)}
    cells = [r for r in rows]
    s["cells"] = {"ok": sum(r["ok"] for r in cells), "of": len(cells),
                  "rate": round(100 * sum(r["ok"] for r in cells) / max(1, len(cells)), 1)}
    ran = [r for r in rows if r.get("status") != "not run"]
    s["cells_run"] = {"ok": sum(r["ok"] for r in ran), "of": len(ran),
                      "rate": round(100 * sum(r["ok"] for r in ran) / max(1, len(ran)), 1)}
    groups: dict[str, list[str]] = {}
    for r in rows:
        if not r["ok"] and r.get("status") != "not run":
            groups.setdefault(r["error"][:160], []).append(f"{r['model']}@{r['target']}")
    s["failures"] = groups
    return s


def _print_summary(title: str, s: dict) -> None:
    print(f"\n{title}: models run {s['models_run']} of {s['models_asked']} asked ({s['models_in_list']} in the list)",
          flush=True)
    for t in TARGETS:
        x = s[t]
        ag = (f", agreement median {x['agreement_median']:.1f}% min {x['agreement_min']:.1f}% "
              f"({x['agreement_min_model']})" if "agreement_median" in x else "")
        print(f"  {t:11s}: {x['ok']}/{x['of']} = {x['rate']:.1f}% succeeded "
              f"({x['ok']}/{x['of_run']} = {x['rate_of_run']:.1f}% of those run){ag}")
    print(f"  both targets: {s['all_targets']['ok']}/{s['all_targets']['of']} = {s['all_targets']['rate']:.1f}%; "
          f"model x target: {s['cells']['ok']}/{s['cells']['of']} = {s['cells']['rate']:.1f}% "
          f"(target >= 95%: {'PASS' if s['cells']['rate'] >= 95 else 'FAIL'}); of those run: "
          f"{s['cells_run']['ok']}/{s['cells_run']['of']} = {s['cells_run']['rate']:.1f}%")
    if s["not_run"]:
        print(f"  not run ({len(s['not_run'])}): {', '.join(s['not_run'])}")
    for err, who in sorted(s["failures"].items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(who):3d} x {err}\n        {', '.join(who)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torchvision", action="store_true", help="part 1: torchvision classification models")
    ap.add_argument("--hf", action="store_true", help="part 2: small Hugging Face architectures")
    ap.add_argument("--models", default="", help="part 1: only these torchvision models (comma-separated)")
    ap.add_argument("--limit", type=int, default=0, help="part 1: only the N smallest models")
    ap.add_argument("--archs", default="", help=f"part 2: only these ({','.join(HF_ARCHS)})")
    ap.add_argument("--size", type=int, default=64, help="part 1: input side tried first")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per model (both targets)")
    ap.add_argument("--budget-minutes", type=float, default=55.0, help="part 1: no model starts after this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-user-models")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--part", default="", help=argparse.SUPPRESS)
    ap.add_argument("--log", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one model in its own process: one JSON line per target appended to --log
        import warnings

        warnings.filterwarnings("ignore")
        torch.set_num_threads(args.threads)
        args.out = tempfile.mkdtemp(prefix="slimkit-user-")  # the run folders: not kept
        try:
            (child_torchvision if args.part == "tv" else child_hf)(args.child, args, Path(args.log))
        finally:
            shutil.rmtree(args.out, ignore_errors=True)
        return 0
    if not (args.torchvision or args.hf):
        ap.error("choose --torchvision and/or --hf")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for flag, key, fn, title in ((args.torchvision, "torchvision", part_torchvision, "part 1 (torchvision)"),
                                 (args.hf, "hf", part_hf, "part 2 (Hugging Face)")):
        if not flag:
            continue
        res = fn(args, out / key)
        res["command"] = " ".join(["python", "benchmarks/user_models.py", *sys.argv[1:]])
        res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        (out / key / "results.json").write_text(json.dumps(res, indent=1))
        _print_summary(title, res["summary"])
        print(f"  written: {out / key / 'results.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
