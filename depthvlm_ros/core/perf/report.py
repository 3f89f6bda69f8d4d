"""The ``depthvlm perf`` report: ``perf.json``, the ``perf.md`` summary and the ``perf.png`` plot.

:func:`write_report` writes all three for one report dict (what :mod:`.runner` collects) and
prints the summary. The summary is one table row per measured ratio (:func:`write_summary`)
and, for a full-architecture run, the section of :func:`summary_markdown`; the plot shows every
ratio on a log scale with its target or the paper's figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from .arch import STAGES
from .flops import format_flops

__all__ = ["write_report", "write_summary", "summary_markdown", "json_safe"]


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_report(report: dict, out: Path, progress: Callable[[str], None]) -> dict:
    """Write perf.json, perf.md (and perf.png) into ``out`` and pass the summary to ``progress``.

    Returns:
        The report as written to perf.json (NaN and infinities as None).
    """
    report = json_safe(report)
    (out / "perf.json").write_text(json.dumps(report, indent=2) + "\n")
    md = write_summary(report, out)
    progress("")
    progress(md)
    progress(f"wrote {out / 'perf.json'}, {out / 'perf.md'}"
             + (f", {out / 'perf.png'}" if (out / "perf.png").is_file() else ""))
    return report


def write_summary(report: dict, out: str | Path) -> str:
    """Write ``perf.md`` (and ``perf.png``) for a ``perf.json`` report; return the Markdown."""
    out = Path(out)
    has_plot = _plot(report, out / "perf.png")
    lines = [
        "# depthvlm perf",
        "",
        f"{report['created']} · {report['device']} · {report['threads']} torch thread(s) · "
        f"repeats {report['repeats']}{' · quick' if report['quick'] else ''} · "
        f"torch {report['host']['torch']} · GPU: {report['gpu']}",
        "",
        report["note"],
    ]
    rows = _rows(report)
    if rows or "gpu_arch" not in report:
        lines += ["", "| figure | model | A | B | A/B | target | n |",
                  "|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
    arch = report.get("gpu_arch")
    if arch is not None:
        lines.append("")
        if arch.get("status", "ok") == "ok":
            lines += summary_markdown(arch)
        else:
            lines.append(f"## Full architecture ({arch.get('arch')}): {arch['status']}")
    if report["models"]:
        lines += ["", "Models: " + "; ".join(
            f"{n}: {m['parameters'] / 1e6:.2f} M parameters, canonical fx {m['canonical_fx']:g}"
            for n, m in report["models"].items())]
    if has_plot:
        lines += ["", "![ratios](perf.png)"]
    text = "\n".join(lines) + "\n"
    (out / "perf.md").write_text(text)
    return text


def _rows(report: dict) -> list[tuple[str, str, str, str, str, str, int | str]]:
    """(figure, model, variant A, variant B, ratio, target, repeats) per measured figure."""
    rows = []
    figs = report["figures"]
    for model, r in figs.get("dense_vs_points", {}).items():
        if r.get("status") != "ok":
            rows.append(("dense vs per-point", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"{r['points']} point queries vs 1 dense map "
                     f"({r['image'][0]}x{r['image'][1]})",
                     model, f"{r['points_total_s']:.2f} s", _ms(r["dense"]),
                     _x(r["ratio_points_vs_dense"]), "", f"{r['points']}/{r['dense']['n']}"))
        rows.append((f"every pixel of {r['projected_image'][0]}x{r['projected_image'][1]} "
                     "(projected) vs dense", model, f"{r['projected_points_h']:.2f} h",
                     _ms(r["dense"]), _x(r["ratio_projected_all_pixels"]),
                     f"paper {_x(r['paper_ratio_all_pixels'])}",
                     f"{r['points']}/{r['dense']['n']}"))
    for model, r in figs.get("prefix_reuse", {}).items():
        if r.get("status") != "ok":
            rows.append(("prefix reuse", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"first token, {r['question_tokens']}-token question: full re-prefill vs "
                     f"prefix reuse ({r['tokens']} image tokens)", model,
                     _ms(r["first_token_full"]), _ms(r["first_token_reuse"]),
                     _x(r["ratio_first_token"]),
                     f">= 3x {'met' if r['meets_target'] else 'MISSED'}",
                     r["first_token_reuse"]["n"]))
        rows.append((f"whole answer ({r['answer_tokens']} tokens): full vs reuse"
                     f"{'' if r['answers_equal'] else ' (ANSWERS DIFFER)'}", model,
                     _ms(r["answer_full"]), _ms(r["answer_reuse"]), _x(r["ratio_answer"]), "",
                     r["answer_reuse"]["n"]))
    for model, r in figs.get("measured_answers", {}).items():
        if r.get("status") != "ok":
            rows.append(("measured answers", model, "-", "-", r["status"], "", "-"))
            continue
        for q in r["rows"]:
            rows.append((f"measured answer ({q['question']}) / model answer, "
                         f"{r['image'][0]}x{r['image'][1]}", model, _ms(q["measure"]),
                         _ms(q["model"]), f"{q['ratio_measure_vs_model'] * 100:.2f}%",
                         f"<= 5% {'met' if q['meets_target'] else 'MISSED'}", r["repeats"]))
    for model, r in figs.get("camera_batch", {}).items():
        if r.get("status") != "ok":
            rows.append(("camera batch", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"{r['cameras']} cameras, {r['image'][0]}x{r['image'][1]} "
                     f"({r['tokens']} tokens): one pass each vs one batched pass", model,
                     _ms(r["sequential"]), _ms(r["batched"]),
                     _x(r["ratio_sequential_vs_batched"]),
                     f"same depth to {r['max_relative_depth_difference']:.0e}", r["repeats"]))
    for _, r in figs.get("jpeg_decode", {}).items():
        if r.get("status") != "ok":
            rows.append(("JPEG decode", "-", "-", "-", r["status"], "", "-"))
            continue
        for z in r["sizes"]:
            rows.append((f"JPEG decode {z['width']}x{z['height']}: Pillow vs simplejpeg "
                         f"(package uses {r['backend']})", "-", _ms(z["pillow"]),
                         _ms(z["simplejpeg"]) if z["simplejpeg"] else "not installed",
                         _x(z["ratio"]) if z["simplejpeg"] else "-", "",
                         z["pillow"]["n"]))
    for model, r in figs.get("node_overhead", {}).items():
        if r.get("status") != "ok":
            rows.append(("node overhead", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append(("node overhead (in->out minus node model time) / model time", model,
                     _ms(r["overhead_vs_node_model"]), _ms(r["node_model"]),
                     f"{r['ratio_overhead_vs_model'] * 100:.1f}%"
                     if r.get("ratio_overhead_vs_model") is not None else "-",
                     f"<= 10% {'met' if r['meets_target'] else 'MISSED'}", r["frames"]))
        if r.get("ratio_overhead_vs_direct") is not None:
            rows.append(("node overhead vs direct pipeline timing", model,
                         _ms(r["overhead_vs_direct"]), _ms(r["direct_pipeline"]),
                         f"{r['ratio_overhead_vs_direct'] * 100:.1f}%", "", r["frames"]))
        mc = r.get("message_costs") or {}
        if mc.get("sum_ms") is not None:
            rows.append(("  of which message work in-process (convert + CDR, both ways) / "
                         "overhead", model, f"{mc['sum_ms']:.1f} ms",
                         _ms(r["overhead_vs_node_model"]),
                         f"{mc['sum_ms'] / r['overhead_vs_node_model']['median_ms'] * 100:.0f}%"
                         if (r["overhead_vs_node_model"].get("median_ms") or 0) > 0 else "-",
                         "", r["frames"]))
    for model, r in figs.get("pointcloud", {}).items():
        if r.get("status") != "ok":
            rows.append(("point cloud", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"PointCloud2 build (xyz+rgb) / model time ({r['image'][0]}x{r['image'][1]})",
                     model, _ms(r["cloud_rgb"]), _ms(r["model"]),
                     f"{r['ratio_cloud_vs_model'] * 100:.1f}%", "", r["model"]["n"]))
    for model, r in figs.get("head_backends", {}).items():
        if r.get("status") != "ok":
            rows.append(("head backends", model, "-", "-", r["status"], "", "-"))
            continue
        by = {row["backend"]: row for row in r["rows"]}
        ort = by.get("onnxruntime", {})
        rows.append((f"depth head torch vs onnxruntime (grid {r['grid'][0]}x{r['grid'][1]})",
                     model, _ms({"median_ms": by.get("torch", {}).get("median_ms")}),
                     _ms({"median_ms": ort.get("median_ms")}) if ort.get("status") == "ok"
                     else ort.get("status", "-"),
                     _x(r["ratio_torch_vs_onnxruntime"]), "", r["repeats"]))
    return rows


def _plot(report: dict, path: Path) -> bool:
    """Bar chart of the ratios (log scale); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figs = report["figures"]
    bars: list[tuple[str, float, float | None]] = []  # label, ratio, target
    for model, r in figs.get("dense_vs_points", {}).items():
        if r.get("status") == "ok":
            bars.append((f"{r['points']} points / dense\n{model}", r["ratio_points_vs_dense"],
                         None))
            bars.append((f"all pixels / dense (proj.)\n{model}",
                         r["ratio_projected_all_pixels"], r["paper_ratio_all_pixels"]))
    for model, r in figs.get("prefix_reuse", {}).items():
        if r.get("status") == "ok":
            bars.append((f"1st token full / reuse\n{model}", r["ratio_first_token"], 3.0))
            bars.append((f"answer full / reuse\n{model}", r["ratio_answer"], None))
    for model, r in figs.get("node_overhead", {}).items():
        if r.get("status") == "ok" and r.get("ratio_overhead_vs_model") is not None:
            bars.append((f"node overhead / model\n{model}",
                         max(r["ratio_overhead_vs_model"], 1e-4), 0.10))
    for model, r in figs.get("pointcloud", {}).items():
        if r.get("status") == "ok":
            bars.append((f"cloud build / model\n{model}", r["ratio_cloud_vs_model"], None))
    for model, r in figs.get("head_backends", {}).items():
        if r.get("status") == "ok" and r.get("ratio_torch_vs_onnxruntime"):
            bars.append((f"head torch / onnxruntime\n{model}", r["ratio_torch_vs_onnxruntime"],
                         None))
    arch = report.get("gpu_arch") or {}
    for name, r in (arch.get("variants") or {}).items():
        if name != "eager" and r.get("status") == "ok" and r.get("speedup_vs_eager"):
            bars.append((f"frame eager / {name}\n{arch['arch']} {arch['dtype']}",
                         r["speedup_vs_eager"], None))
    bars = [b for b in bars if b[1] is not None and b[1] > 0]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(bars) + 1.2))
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [b[1] for b in bars], color="#4477aa")
    for y, (_, value, target) in zip(ys, bars):
        ax.text(value, y, f" {value:.3g}x", va="center", fontsize=8)
        if target:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="#cc3311", lw=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("ratio of medians (log scale); red tick = target or paper figure")
    ax.set_title("depthvlm perf: ratios measured within one run"
                 + (" (quick)" if report.get("quick") else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _ms(stats: dict | None) -> str:
    if not stats or stats.get("median_ms") is None:
        return "-"
    v = stats["median_ms"]
    return f"{v / 1e3:.2f} s" if v >= 1000 else f"{v:.1f} ms"


def _x(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def summary_markdown(result: dict[str, Any]) -> list[str]:
    """Markdown lines for a :func:`~.arch.run_arch_benchmark` result (a section of ``perf.md``)."""
    r = result
    f = r["flops"]
    name = {"4b": "DepthVLM-4B (Qwen3-VL-4B + DPT head)", "tiny": "tiny test model"}.get(
        r["arch"], r["arch"])
    lines = [
        f"## Full architecture: {name}, random weights, {r['dtype']} on {r['device_name']}",
        "",
        f"{r['image'][0]}x{r['image'][1]} camera (fx {r['fx']:g}), {r['resize_mode']} resize -> "
        f"{r['model_image'][0]}x{r['model_image'][1]} model image: {r['grid'][0]}x{r['grid'][1]} "
        f"= {r['image_tokens']} image tokens ({r['vision_patches']} vision patches), "
        f"{r['sequence_tokens']}-token prefill; {r['parameters'] / 1e9:.3f} B parameters "
        f"({_gib(r['weights_bytes'])}); attention {r['attn_implementation']}; "
        f"{r['repeats']} timed frames per variant, interleaved.",
        "",
        f"Compute per depth-only frame: {format_flops(f['total'])} "
        f"(vision {format_flops(f['vision'])}, LLM prefill {format_flops(f['llm'])}, "
        f"head {format_flops(f['head'])}; matmul/conv FLOPs, causal attention). "
        f"**Compute-bound limit "
        f"{r['compute_bound_fps']:.1f} frames/s** at {r['peak_flops'] / 1e12:.0f} TFLOP/s "
        f"({r['peak_flops_name']})"
        + (f"; {r['compute_bound_fps_measured_matmul']:.1f} frames/s at the matmul rate measured "
           f"here ({r['measured_matmul_flops'] / 1e12:.0f} TFLOP/s)."
           if r.get("measured_matmul_flops") else "."),
        "",
        "Stage columns are median milliseconds per frame; frames/s is 1 / median frame time; "
        "MFU is achieved over peak FLOP/s for the whole frame.",
        "",
        "| variant | frames/s | vs eager | preprocess | vision | prefill | head | postprocess "
        "| total | peak memory | MFU | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for vname, v in r["variants"].items():
        if v.get("status") != "ok":
            lines.append(f"| {vname} | - | - | - | - | - | - | - | - | - | - | {v.get('status')} |")
            continue
        st = v["stages"]
        sp = v.get("speedup_vs_eager")
        lines.append(
            f"| {vname} | {v['fps']:.1f} | {sp:.2f}x | "
            + " | ".join(_stage_ms(st[s]) for s in STAGES)
            + f" | {_gib(v.get('peak_memory_bytes'))} | "
            + (f"{v['mfu'] * 100:.0f}%" if v.get("mfu") is not None else "-") + " | ok |")
    if r.get("absolute_times_meaningful"):
        verdict = ("met" if r["meets_target"] else "MISSED") if r.get("best_variant") else "-"
        best = r["variants"].get(r.get("best_variant"), {})
        gpu_only = best.get("fps_model_stages")
        lines += ["", f"Target >= {r['target_fps']:g} frames/s depth-only on one H100: best "
                      f"{r['best_fps']:.1f} frames/s end to end ({r['best_variant']}"
                      + (f"; {gpu_only:.1f} frames/s for vision + prefill + head alone"
                         if gpu_only else "")
                      + f") against a compute-bound limit of {r['compute_bound_fps']:.1f}: "
                      f"**{verdict}**."]
    else:
        lines += ["", f"Target >= {r['target_fps']:g} frames/s on one H100: not measured "
                      "(no GPU in this run; times above are CPU times of the code path)."]
    lines += ["", r["note"]]
    return lines


def _stage_ms(stats: dict | None) -> str:
    if not stats or stats.get("median_ms") is None:
        return "-"
    return f"{stats['median_ms']:.2f}"


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2 ** 30:.2f} GiB"

