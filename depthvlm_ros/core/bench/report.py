"""Benchmark reports: ``results.json``, a Markdown report and a self-contained HTML report.

Plots are drawn with matplotlib's Agg backend (no display needed), saved as PNG files under
``<out>/plots/`` (linked from the Markdown) and embedded as base64 in the HTML, so the HTML can
be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .metrics import AUTHORS_METRICS, DATASET_COUNTS, HEADLINE_METRIC, METRIC_NAMES
from .runner import GROUPS, BenchResult

__all__ = ["write_results_json", "write_report", "render_markdown", "render_html", "make_plots",
           "summary_lines"]

# Table titles say which protocol a number comes from; "auto" is the one to compare with the paper.
_PROTOCOL_TITLES = {
    "auto": "auto protocol (authors' rule: points where annotated, else dense map)",
    "sparse": "sparse protocol (annotated points)",
    "dense": "dense protocol (whole GT map; ours for records with points)",
}


def _proto_title(proto: str) -> str:
    return _PROTOCOL_TITLES.get(proto, f"{proto} protocol")


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)  # reports are written on headless machines
    import matplotlib.pyplot as plt

    return plt


def _clean(o: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def write_results_json(results: dict, path: str | os.PathLike) -> Path:
    """Write the results document (strict JSON: no NaN) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _fmt(v: Any, key: str = HEADLINE_METRIC) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if key in DATASET_COUNTS:
        return str(int(v))
    if key.startswith("delta"):
        return f"{100 * v:.1f}"
    return f"{v:.3f}"


def _datasets(results: dict) -> list[str]:
    return list(results["metadata"]["datasets"].keys())


def _tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report."""
    out = []
    names = _datasets(results)
    for proto, rows in results["results"].items():
        header = ["method"] + names + list(GROUPS)
        body = []
        for row_name, r in rows.items():
            cells = [row_name] + [_fmt(r["datasets"][n].get(HEADLINE_METRIC))
                                  if n in r["datasets"] else "–" for n in names]
            cells += [_fmt(r[g][HEADLINE_METRIC]) if r.get(g) else "–" for g in GROUPS]
            body.append(cells)
        out.append((f"{_proto_title(proto)} — δ1 (%)", header, body))
        for row_name, r in rows.items():
            # Starred metrics are ours, not the authors' (see metric_provenance).
            header = (["dataset"] + [m if m in AUTHORS_METRICS else f"{m}*" for m in METRIC_NAMES]
                      + list(DATASET_COUNTS) + ["scored sparse", "scored dense"])
            body = []
            for n in names + list(GROUPS):
                d = r["datasets"].get(n) if n in r["datasets"] else r.get(n)
                if not d:
                    continue
                sa = d.get("scored_as") or {}
                body.append([n] + [_fmt(d.get(k), k) for k in METRIC_NAMES + DATASET_COUNTS]
                            + [str(sa["sparse"]) if sa else "–", str(sa["dense"]) if sa else "–"])
            out.append((f"{_proto_title(proto)} — {row_name}, all metrics (* = ours, not in the "
                        "authors' evaluation)", header, body))
    t = results["metadata"]["timings"]
    cost = [["model (dense, one pass)", _fmt(t["model_per_image"]["mean_s"], "s"),
             _fmt(t["model_per_image"]["median_s"], "s"), "–", str(t["model_per_image"]["n"])]]
    if t["depthlm_per_point"]["n"]:
        cost.append(["depthlm (one question per point)", _fmt(t["depthlm_per_image"]["mean_s"], "s"),
                     _fmt(t["depthlm_per_image"]["median_s"], "s"),
                     _fmt(t["depthlm_per_point"]["mean_s"], "s"), str(t["depthlm_per_image"]["n"])])
    out.append(("cost", ["method", "mean s / image", "median s / image", "mean s / point",
                         "images"], cost))
    out += _qa_tables(results.get("spatial_qa"))
    return out


def _qa_tables(qa: dict | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """Spatial QA: accuracy of the model's text and of the measured answer, per item type."""
    if not qa:
        return []
    if not qa["n_items"]:
        return [("spatial QA", ["note"], [["the test sets have no QA items"]])]
    from .spatial_qa import QA_TYPES, SOURCES

    header = ["dataset", "answer"] + list(QA_TYPES) + ["all", "items", "pointing hit rate"]
    body = []
    for ds, d in qa["datasets"].items():
        pointing = d["pointing"]
        for source in SOURCES:
            cells = [ds, source]
            cells += [_fmt(d["by_type"][t][source]) if t in d["by_type"] else "–"
                      for t in QA_TYPES]
            cells += [_fmt(d["overall"][source]), str(d["overall"]["n"]),
                      (f"{100 * pointing['hit_rate']:.1f} ({pointing['n']})"
                       if pointing["n"] else "no boxes")]
            body.append(cells)
    return [("spatial QA — answers right (%): numeric within 25 %, comparisons correct",
             header, body)]


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _mpl().close(fig)
    return buf.getvalue()


def _colorize(depth: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    t = np.clip((d - vmin) / max(vmax - vmin, 1e-6), 0, 1)
    rgb = colormaps["turbo"](np.where(valid, t, 0))[..., :3]
    rgb[~valid] = 0.0  # invalid = black
    return rgb


def make_plots(result: BenchResult, max_samples: int = 6) -> dict[str, bytes]:
    """All report figures as PNG bytes, keyed by file name.

    * ``delta1_<protocol>.png``: δ1 per dataset, model next to the baselines.
    * ``delta1_vs_depth_<protocol>.png``: δ1 of the model binned by GT depth, per dataset.
    * ``samples.png``: RGB, GT, prediction (same colour scale) and abs-rel error per sample.
    """
    plt = _mpl()
    res = result.results
    names = _datasets(res)
    figs: dict[str, bytes] = {}
    for proto, rows in res["results"].items():
        labels = names + [g for g in GROUPS if any(r.get(g) for r in rows.values())]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * max(1, len(rows)) / 2 + 3), 4))
        width = 0.8 / max(1, len(rows))
        for i, (row_name, r) in enumerate(rows.items()):
            vals = []
            for n in labels:
                d = r["datasets"].get(n) if n in r["datasets"] else r.get(n)
                v = d.get(HEADLINE_METRIC) if d else None
                vals.append(100 * v if v is not None and math.isfinite(v) else 0.0)
            ax.bar(np.arange(len(labels)) + i * width - 0.4 + width / 2, vals, width, label=row_name)
        ax.set_xticks(np.arange(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_ylabel("δ1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"δ1 per dataset ({_proto_title(proto)})", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        figs[f"delta1_{proto}.png"] = _fig_png(fig)

    for proto, by_row in res.get("depth_bins", {}).items():
        model = res["metadata"]["model"]
        if model not in by_row:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for ds, b in by_row[model].items():
            edges = b["edges_m"]
            centres = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
            xs = [c for c, v in zip(centres, b["delta1"]) if v is not None]
            ys = [100 * v for v in b["delta1"] if v is not None]
            if xs:
                ax.plot(xs, ys, marker="o", label=ds)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("GT depth (m), bin centre")
        ax.set_ylabel("δ1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model}: δ1 vs depth ({proto}; pixels pooled per bin)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs[f"delta1_vs_depth_{proto}.png"] = _fig_png(fig)

    samples = result.samples[:max_samples]
    if samples:
        fig, axes = plt.subplots(len(samples), 4, figsize=(13, 2.8 * len(samples)), squeeze=False)
        for row, s in zip(axes, samples):
            g = s.gt[s.gt > 0]
            vmin, vmax = (float(np.percentile(g, 2)), float(np.percentile(g, 98))) if g.size else (0.0, 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                err = np.where((s.gt > 0) & (s.pred > 0), np.abs(s.pred - s.gt) / s.gt, np.nan)
            row[0].imshow(s.rgb)
            row[0].set_title(f"{s.dataset}/{s.name}", fontsize=8)
            row[1].imshow(_colorize(s.gt, vmin, vmax))
            row[1].set_title(f"GT ({vmin:.1f}–{vmax:.1f} m)", fontsize=8)
            row[2].imshow(_colorize(s.pred, vmin, vmax))
            row[2].set_title("prediction (same scale)", fontsize=8)
            im = row[3].imshow(err, cmap="magma", vmin=0, vmax=0.5)
            row[3].set_title("abs-rel error (0–0.5)", fontsize=8)
            fig.colorbar(im, ax=row[3], fraction=0.046)
            for a in row:
                a.axis("off")
        fig.tight_layout()
        figs["samples.png"] = _fig_png(fig)
    return figs


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _meta_lines(res: dict) -> list[str]:
    m = res["metadata"]
    lines = [f"- model: `{m['model']}`", f"- protocols: {', '.join(m['protocols'])}"]
    ss = m.get("sparse_sampling")
    if ss:
        lines.append(f"- sparse sampling: {ss['used']} (requested {ss['requested']}; "
                     f"predictions from {m.get('prediction_source', '?')})")
    prov = m.get("metric_provenance")
    if prov:
        lines.append(f"- metrics: {', '.join(prov['authors'])} = the authors'; "
                     f"{', '.join(prov['ours'])} = ours")
    lines += [f"- date (UTC): {m['date']}", f"- wall time: {m['timings']['wall_s']:.1f} s"]
    if m.get("limit"):
        lines.append(f"- limited to {m['limit']} images per dataset")
    if m.get("depthlm_points"):
        pf = m.get("depthlm_parse_failures") or {}
        lines.append(f"- depthlm: {m['depthlm_points']} points per image; unusable answers "
                     f"{pf.get('failed', 0)} / {pf.get('asked', 0)}")
    else:
        lines.append("- depthlm baseline: not run (saved predictions have no VLM to ask, or "
                     "--depthlm-points 0)")
    for name, d in m["datasets"].items():
        const = f"{d['constant_m']:.2f} m ({d['constant_source']})" if d.get("constant_m") else "–"
        extra = ", extra set (not in the group means)" if d.get("extra") else ""
        lines.append(f"- {name}: {d['n_records']} images, {d['domain']}{extra}, GT range "
                     f"[{d['min_depth']}, {d['max_depth'] if d['max_depth'] is not None else '∞'}] m, "
                     f"constant baseline {const}")
    return lines


def _defs(res: dict) -> list[tuple[str, str]]:
    m = res["metadata"]
    d = dict(m["definitions"])
    base = d.pop("baselines", {})
    protos = [(f"protocol {k}", v) for k, v in m.get("protocol_definitions", {}).items()]
    ss = m.get("sparse_sampling")
    sampling = [(f"sparse sampling {ss['used']}", ss["definition"])] if ss else []
    qa = [(f"spatial QA {k}", v) for k, v in (res.get("spatial_qa") or {}).get(
        "definitions", {}).items()]
    return protos + sampling + list(d.items()) + list(base.items()) + qa


def render_markdown(result: BenchResult, plot_files: Sequence[str]) -> str:
    """The report as Markdown; ``plot_files`` are paths relative to the report."""
    res = result.results
    parts = ["# DepthVLM-Bench report", "", *_meta_lines(res), ""]
    for title, header, rows in _tables(res):
        parts += [f"## {title}", "", _md_table(header, rows), ""]
    if plot_files:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plot_files] + [""]
    parts += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in _defs(res)] + [""]
    return "\n".join(parts)


def render_html(result: BenchResult, plots: dict[str, bytes]) -> str:
    """The report as one self-contained HTML page (plots embedded as base64 PNG)."""
    res = result.results
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>DepthVLM-Bench report</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%}</style></head><body>",
             "<h1>DepthVLM-Bench report</h1><ul>"]
    parts += [f"<li>{e(line[2:])}</li>" for line in _meta_lines(res)]
    parts.append("</ul>")
    for title, header, rows in _tables(res):
        parts.append(f"<h2>{e(title)}</h2><table><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    if plots:
        parts.append("<h2>Plots</h2>")
        for name, png in plots.items():
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f"<h3>{e(name)}</h3><img alt='{e(name)}' src='data:image/png;base64,{b64}'>")
    parts.append("<h2>Definitions</h2><ul>")
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in _defs(res)]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def write_report(result: BenchResult, out_dir: str | os.PathLike,
                 max_samples: int = 6) -> dict[str, Path]:
    """Write ``results.json``, ``report.md``, ``report.html`` and ``plots/*.png`` to ``out_dir``.

    Returns:
        Paths keyed ``results``, ``markdown``, ``html``.
    """
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plots = make_plots(result, max_samples=max_samples)
    rel = []
    for name, png in plots.items():
        (out / "plots" / name).write_bytes(png)
        rel.append(f"plots/{name}")
    paths = {"results": write_results_json(result.results, out / "results.json"),
             "markdown": out / "report.md", "html": out / "report.html"}
    paths["markdown"].write_text(render_markdown(result, rel), encoding="utf-8")
    paths["html"].write_text(render_html(result, plots), encoding="utf-8")
    return paths


def summary_lines(result: BenchResult, paths: dict[str, Path]) -> list[str]:
    """What ``depthvlm bench`` prints: the model's headline numbers and the written files.

    Per protocol: the overall δ1 (real test sets only) and the δ1 of each extra (synthetic)
    set, which the group means leave out.
    """
    res = result.results
    lines = []
    for proto, rows in res["results"].items():
        r = rows.get(res["metadata"]["model"], {})
        overall = (r.get("overall") or {}).get(HEADLINE_METRIC)
        if overall is not None:
            lines.append(f"{proto}: overall δ1 = {100 * overall:.1f}%")
        for ds, d in (r.get("datasets") or {}).items():
            if res["metadata"]["datasets"][ds]["extra"] and d.get(HEADLINE_METRIC) is not None:
                lines.append(f"{proto}: {ds} δ1 = {100 * d[HEADLINE_METRIC]:.1f}%")
        if not r.get("datasets"):
            lines.append(f"{proto}: no images")
    qa = res.get("spatial_qa")
    for ds, d in ((qa or {}).get("datasets") or {}).items():
        o = d["overall"]
        lines.append(f"spatial QA {ds}: model text {100 * o['model']:.1f}%, measured "
                     f"{100 * o['measured']:.1f}% of {o['n']}")
    lines += [f"results: {paths['results']}", f"report:  {paths['markdown']}",
              f"         {paths['html']}"]
    return lines
