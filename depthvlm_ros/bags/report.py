"""Report of a bag replay: results.json, report.md, report.html and their plots.

The plots are made with matplotlib's Agg backend (no display needed): δ1 and AbsRel per frame
over bag time, and for a few frames a panel of the input, GT, prediction and the AbsRel error
map, plus each frame's colourised prediction as its own PNG.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ..core.visualize import colorize_depth
from .replay import ReplayOptions, ReplaySummary

__all__ = ["write_report"]

_PLOTS = "plots"


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _plot_series(summary: ReplaySummary, key: str, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = [s.t_s for s in summary.scores]
    y = [s.metrics[key] if s.metrics[key] is not None else math.nan for s in summary.scores]
    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    ax.plot(t, y, marker="o", ms=3, lw=1)
    ax.set_xlabel("time from bag start (s)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if key.startswith("delta"):
        ax.set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_frame(frame: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pred, gt = frame["pred"], frame["gt"]
    panels = [("input", frame["rgb"], None)]
    if gt is not None:
        valid = np.isfinite(gt) & (gt > 0)
        lo, hi = (np.percentile(gt[valid], [2, 98]) if valid.any() else (None, None))
        lo = float(lo) if lo is not None else None
        hi = float(hi) if hi is not None else None
        panels.append(("ground truth", colorize_depth(gt, lo, hi), None))
        panels.append(("prediction", colorize_depth(pred, lo, hi), None))
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(valid & np.isfinite(pred), np.abs(pred - gt) / gt, np.nan)
        panels.append(("AbsRel error", err, "magma"))
    else:
        panels.append(("prediction", colorize_depth(pred), None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), dpi=100)
    for ax, (title, img, cmap) in zip(np.atleast_1d(axes), panels):
        if cmap:
            # Pixels without GT or prediction are grey, not the colour of zero error.
            cm = matplotlib.colormaps[cmap].with_extremes(bad="0.8")
            im = ax.imshow(img, cmap=cm, vmin=0.0, vmax=0.5)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        else:
            ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(summary: ReplaySummary, out_dir: str | Path,
                 options: ReplayOptions | None = None) -> dict[str, Path]:
    """Write results.json, report.md, report.html and plots into ``out_dir``.

    Returns:
        Paths of the written files by name (``results``, ``markdown``, ``html`` and plots).
    """
    from PIL import Image

    out = Path(out_dir)
    (out / _PLOTS).mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    images: list[tuple[str, str]] = []  # (caption, relative path)
    if summary.scores:
        for key, label in (("delta1", "δ1"), ("abs_rel", "AbsRel")):
            p = out / _PLOTS / f"{key}_over_time.png"
            _plot_series(summary, key, label, p)
            files[f"{key}_over_time"] = p
            images.append((f"{label} over time", f"{_PLOTS}/{p.name}"))
    for f in summary.report_frames:
        stem = f"frame_{f['index']:05d}"
        p = out / _PLOTS / f"{stem}_panel.png"
        _plot_frame(f, p)
        c = out / _PLOTS / f"{stem}_pred_color.png"
        Image.fromarray(colorize_depth(f["pred"])).save(c)
        files[f"{stem}_panel"], files[f"{stem}_pred_color"] = p, c
        kind = "input / GT / prediction / error" if f["gt"] is not None else "input / prediction"
        images.append((f"frame {f['index']} ({kind})", f"{_PLOTS}/{p.name}"))
        images.append((f"frame {f['index']} colourised prediction", f"{_PLOTS}/{c.name}"))

    results = summary.as_dict()
    if options is not None:
        results["options"] = {
            "image_topic": options.image_topic, "camera_info_topic": options.camera_info_topic,
            "gt_depth_topic": options.gt_depth_topic, "points": options.points,
            "storage": options.storage, "fallback_hfov_deg": options.fallback_hfov_deg,
            "sync_tolerance_s": options.sync_tolerance_s, "gt_min_depth": options.gt_min_depth,
            "gt_max_depth": options.gt_max_depth if math.isfinite(options.gt_max_depth) else None,
            "queries": len(options.queries)}
    if summary.scores:
        from ..core.bench.metrics import METRIC_DEFINITIONS

        results["metric_definitions"] = METRIC_DEFINITIONS
    results["plots"] = {k: str(v.relative_to(out)) for k, v in files.items()}
    files["results"] = out / "results.json"
    files["results"].write_text(json.dumps(results, indent=2) + "\n")

    rows = [("input bag", summary.input_bag), ("output bag", summary.output_bag),
            ("image messages", summary.frames_total),
            ("processed", summary.frames_processed),
            ("of which with fallback intrinsics", summary.frames_fallback),
            ("skipped: no camera_info", summary.frames_unpaired),
            ("skipped: bad image", summary.frames_bad),
            ("bad camera_info messages", summary.camera_info_bad),
            ("scored against GT", summary.frames_scored),
            ("bad / unmatched GT messages", f"{summary.gt_bad} / {summary.gt_unmatched}"),
            ("answers (errors)", f"{summary.answers} ({summary.answer_errors})"),
            ("mean / median s per frame", f"{_fmt(summary.frame_s_mean)} / "
                                          f"{_fmt(summary.frame_s_median)}"),
            ("wall time (s)", _fmt(summary.wall_s, 1))]
    agg = summary.aggregate
    md = ["# Bag replay report", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    if agg:
        md += ["", "## Metrics (mean over frames)", "",
               "| δ1 | δ2 | δ3 | AbsRel | RMSE (m) | SILog |", "|---|---|---|---|---|---|",
               "| " + " | ".join(_fmt(agg.get(k)) for k in
                                 ("delta1", "delta2", "delta3", "abs_rel", "rmse", "silog"))
               + " |"]
    if summary.warnings:
        md += ["", "## Warnings", ""] + [f"- {w}" for w in summary.warnings]
    if summary.answers_log:
        md += ["", "## Answers", "", "| id | stamp (ns) | status | question | answer |",
               "|---|---|---|---|---|"]
        md += [f"| {a['id']} | {a['stamp_ns']} | {a['status']} | {a['question']} | "
               f"{a['answer'] or a['status_reason']} |" for a in summary.answers_log]
    if images:
        md += ["", "## Plots", ""] + [f"![{c}]({p})" for c, p in images]
    files["markdown"] = out / "report.md"
    files["markdown"].write_text("\n".join(md) + "\n")

    e = html.escape
    body = ["<h1>Bag replay report</h1>", "<table>"]
    body += [f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
    body.append("</table>")
    if agg:
        heads = ("δ1", "δ2", "δ3", "AbsRel", "RMSE (m)", "SILog")
        keys = ("delta1", "delta2", "delta3", "abs_rel", "rmse", "silog")
        body += ["<h2>Metrics (mean over frames)</h2><table><tr>",
                 "".join(f"<th>{h}</th>" for h in heads), "</tr><tr>",
                 "".join(f"<td>{_fmt(agg.get(k))}</td>" for k in keys), "</tr></table>"]
    if summary.warnings:
        body += ["<h2>Warnings</h2><ul>"] + [f"<li>{e(w)}</li>" for w in summary.warnings]
        body.append("</ul>")
    if summary.answers_log:
        body += ["<h2>Answers</h2><table><tr><th>id</th><th>stamp (ns)</th><th>status</th>"
                 "<th>question</th><th>answer</th></tr>"]
        body += [f"<tr><td>{e(a['id'])}</td><td>{a['stamp_ns']}</td><td>{a['status']}</td>"
                 f"<td>{e(a['question'])}</td><td>{e(a['answer'] or a['status_reason'])}</td></tr>"
                 for a in summary.answers_log]
        body.append("</table>")
    if images:
        body.append("<h2>Plots</h2>")
        body += [f'<figure><img src="{e(p)}" alt="{e(c)}"><figcaption>{e(c)}</figcaption></figure>'
                 for c, p in images]
    files["html"] = out / "report.html"
    files["html"].write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Bag replay report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "img{max-width:100%}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return files
