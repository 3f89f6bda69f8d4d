"""The benchmark writer: render, save and annotate many scenes as a DepthVLM-Bench folder.

Each image is rendered from its own scene seed (:func:`~.seeds.scene_seed`) and annotated
from the depth exactly as stored in its PNG, so the files do not depend on the number of
worker processes and every answer can be recomputed from them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from ...errors import InputError
from .constants import (ALL_QA_TYPES, DENSE_PROMPT, DENSE_SOLUTION, DEPTH_SCALE, KINDS, MAX_DEPTH,
                        WORLDS)
from .layouts import build_scene, render_scene
from .objects import (OBJECT_QUESTION, OBJECTS_PER_IMAGE, SCENE_QUESTION, object_answer,
                      scene_answer, visible_objects)
from .qa import make_qa
from .scene import Scene
from .seeds import scene_seed, scene_streams

__all__ = ["write_benchmark", "benchmark_summary"]


class _ImageTask(NamedTuple):
    """Everything one worker needs for one image (picklable for worker processes)."""

    out_dir: str
    kind: str
    index: int
    scene_seed: int
    width: int | None
    height: int | None
    fx: float | None
    image_format: str
    n_points: int
    n_qa: int
    world: str
    scene_qa: bool


def _quantise(depth: np.ndarray, scale: float) -> np.ndarray:
    raw = np.rint(depth.astype(np.float64) * scale)
    return np.clip(raw, 0, 65535).astype(np.uint16)


def _save_image_files(sc: Scene, out: Path, stem: str, image_format: str,
                      scale: float) -> tuple[str, str, np.ndarray]:
    """Write the colour image and the uint16 depth PNG; return their paths and the raw depth."""
    from PIL import Image  # local: keeps importing this package light

    ext = "jpg" if image_format in ("jpg", "jpeg") else "png"
    img_rel, dep_rel = f"rgb/{stem}.{ext}", f"depth/{stem}.png"
    if ext == "jpg":
        Image.fromarray(sc.rgb).save(out / img_rel, quality=95)
    else:
        Image.fromarray(sc.rgb).save(out / img_rel, compress_level=3)
    raw = _quantise(sc.depth, scale)
    Image.fromarray(raw).save(out / dep_rel, compress_level=3)
    return img_rel, dep_rel, raw


def _image_fields(sc: Scene, task: _ImageTask, stem: str, img_rel: str, dep_rel: str,
                  scale: float) -> dict:
    """The fields every annotation line of one image shares (authors' names plus ours)."""
    h, w = sc.depth.shape
    return {
        "scene_id": stem,
        "image": img_rel,
        "depth_path": dep_rel,
        "depth_scale": scale,
        "original_rgb_size": [w, h],
        "original_depth_size": [w, h],
        "original_fx": round(sc.fx, 4),
        "canonical_fx": 1000.0,
        "canonical_size": [max(1, round(w * 1000.0 / sc.fx)), max(1, round(h * 1000.0 / sc.fx))],
        "fy": round(sc.fy, 4),
        "cx": round(sc.cx, 4),
        "cy": round(sc.cy, 4),
        "depth_type": "z_depth",
        "domain": task.kind,
        "dataset": f"synthetic_{task.kind}",
        "scene_seed": task.scene_seed,
        "generator": f"depthvlm_ros.synthetic {WORLDS[task.world]}",
    }


def _annotation_lines(base: dict, dq: np.ndarray, qa_rng: np.random.Generator, n_points: int,
                      n_qa: int) -> list[dict]:
    """One dense-depth line (``n_points`` samples) and up to ``n_qa`` spatial QA lines."""
    # Intrinsics in the file are rounded; QA geometry must use exactly those numbers.
    fx_r, fy_r, cx_r, cy_r = base["original_fx"], base["fy"], base["cx"], base["cy"]
    w = dq.shape[1]
    lines = []
    valid = np.flatnonzero(dq > 0)
    if valid.size:
        pts = valid[qa_rng.choice(valid.size, size=min(n_points, valid.size), replace=False)]
        coords = [[int(i % w), int(i // w)] for i in pts]
        lines.append({**base, "prompt": DENSE_PROMPT, "solution": DENSE_SOLUTION,
                      "pixel_coords": coords,
                      "depth": [round(float(dq[r, c]), 6) for c, r in coords],
                      "qa_type": "dense_depth"})
    for item in make_qa(dq, fx_r, fy_r, cx_r, cy_r, qa_rng, n=n_qa):
        line = {**base, "prompt": item.prompt, "solution": item.solution,
                "pixel_coords": [list(p) for p in item.pixel_coords],
                "depth": [round(x, 6) for x in item.depth], "qa_type": item.qa_type,
                "answer": item.answer if isinstance(item.answer, str) else round(item.answer, 6)}
        if item.region is not None:
            line["region"] = list(item.region)
        lines.append(line)
    return lines


def _scene_lines(base: dict, sc: Scene, dq: np.ndarray, qa_rng: np.random.Generator) -> list[dict]:
    """The scene-kind line and a line for each of up to two named objects in view."""
    kind = sc.kind
    answer = scene_answer(kind)
    lines = [{**base, "prompt": SCENE_QUESTION, "solution": f"{answer.capitalize()}.",
              "pixel_coords": [], "depth": [], "qa_type": "scene_kind", "answer": answer}]
    named = visible_objects(sc.rgb, dq, sc.object_ids, sc.objects) if sc.object_ids is not None \
        else []
    picks = qa_rng.permutation(len(named))[:OBJECTS_PER_IMAGE] if named else []
    for obj in (named[int(i)] for i in sorted(picks)):
        lines.append({**base, "prompt": OBJECT_QUESTION.format(label=obj.label),
                      "solution": object_answer(obj), "pixel_coords": [], "depth": [],
                      "qa_type": "object_distance", "answer": round(obj.depth, 6),
                      "object_box": list(obj.box), "object_label": obj.label})
    return lines


def _one_image(task: _ImageTask) -> tuple[list[dict], tuple[float, float]]:
    """Render, save and annotate one image (runs in a worker process when workers > 1)."""
    t0, c0 = time.perf_counter(), time.process_time()
    sc = render_scene(task.scene_seed, task.kind, width=task.width, height=task.height,
                      fx=task.fx, world=task.world)
    # Wall and CPU time: on a shared machine the CPU time is the fairer speed measure.
    t_render = (time.perf_counter() - t0, time.process_time() - c0)
    stem = f"{task.kind}_{task.index:06d}"
    scale = DEPTH_SCALE[task.kind]
    img_rel, dep_rel, raw = _save_image_files(sc, Path(task.out_dir), stem, task.image_format,
                                              scale)
    # Annotations use the depth as stored, so they can be recomputed from the PNG exactly.
    dq = raw.astype(np.float64) / scale
    base = _image_fields(sc, task, stem, img_rel, dep_rel, scale)
    qa_rng = scene_streams(task.scene_seed, task.kind).qa
    lines = _annotation_lines(base, dq, qa_rng, task.n_points, task.n_qa)
    # Drawn after the depth-map questions, so those stay what earlier files hold.
    if task.scene_qa:
        lines += _scene_lines(base, sc, dq, qa_rng)
    return lines, t_render


def _check_arguments(n_indoor, n_outdoor, seed, width, height, fx, image_format,
                     points_per_image, qa_per_image, workers) -> None:
    """Raise :class:`InputError` for any bad argument of :func:`write_benchmark`."""
    for name, v in (("n_indoor", n_indoor), ("n_outdoor", n_outdoor),
                    ("points_per_image", points_per_image), ("qa_per_image", qa_per_image)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"{name} must be a non-negative integer, got {v!r}")
    if n_indoor + n_outdoor == 0:
        raise InputError("nothing to generate: n_indoor + n_outdoor is 0")
    if image_format not in ("png", "jpg", "jpeg"):
        raise InputError(f"image_format must be png or jpg, got {image_format!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    # Validate overrides once, up front, instead of failing inside a worker.
    build_scene(0, "indoor", width=width, height=height, fx=fx)


def _run_tasks(tasks: list[_ImageTask], workers: int,
               progress: bool) -> tuple[list[list[dict]], float, float]:
    """Annotation lines per task, in task order, and the summed render wall / CPU seconds."""
    render_s = render_cpu_s = 0.0
    results: list[list[dict]] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc="synthetic", unit="img")
    try:
        if workers == 1:
            it: Iterable = map(_one_image, tasks)
            pool = None
        else:
            import multiprocessing as mp
            pool = mp.get_context("spawn").Pool(int(workers))
            it = pool.imap(_one_image, tasks, chunksize=4)
        try:
            for lines, tr in it:
                results.append(lines)
                render_s += tr[0]
                render_cpu_s += tr[1]
                if bar is not None:
                    bar.update(1)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    finally:
        if bar is not None:
            bar.close()
    return results, render_s, render_cpu_s


def _write_jsonl_files(out: Path, all_lines: list[dict], jsonl_name: str,
                       split_by_kind: bool) -> list[str]:
    """Write the combined and (optionally) per-kind JSONL files; return their names."""
    files = {jsonl_name: all_lines}
    if split_by_kind:
        for kind in KINDS:
            sub = [ln for ln in all_lines if ln["domain"] == kind]
            if sub:
                files[f"synthetic_{kind}.jsonl"] = sub
    for name, lines in files.items():
        with open(out / name, "w", encoding="utf-8") as fh:
            for ln in lines:
                fh.write(json.dumps(ln, ensure_ascii=False) + "\n")
    return sorted(files)


def write_benchmark(out_dir: str | os.PathLike, n_indoor: int, n_outdoor: int, seed: int = 0, *,
                    width: int | None = None, height: int | None = None,
                    fx: float | None = None, image_format: str = "png", points_per_image: int = 10,
                    qa_per_image: int = 4, workers: int = 1, progress: bool = True,
                    jsonl_name: str = "synthetic.jsonl", split_by_kind: bool = True,
                    world: str = "v2", scene_qa: bool = True) -> dict:
    """Generate a synthetic DepthVLM-Bench folder.

    Layout::

        out_dir/rgb/<kind>_<index>.png|jpg   colour
        out_dir/depth/<kind>_<index>.png     uint16 depth (value / depth_scale = metres, 0 invalid)
        out_dir/synthetic.jsonl              all annotations (authors' fields + our extras)
        out_dir/synthetic_indoor.jsonl       the indoor lines (the bench runner matches GT
        out_dir/synthetic_outdoor.jsonl      range and domain from these names)
        out_dir/meta.json                    version, seeds, counts, timing

    Per image: one dense-depth line (the authors' prompt, ``points_per_image`` sample points),
    ``qa_per_image`` spatial QA lines about the depth map (``qa_type`` says which) and, with
    ``scene_qa``, a ``scene_kind`` line and an ``object_distance`` line for each of up to two
    objects the frame names (:mod:`.objects`).

    Args:
        out_dir: output folder (created; existing files with the same names are overwritten).
        n_indoor, n_outdoor: number of images per kind.
        seed: base seed; image ``i`` of ``kind`` uses :func:`scene_seed` ``(seed, kind, i)``.
        width, height, fx: overrides passed to :func:`render_scene`.
        image_format: ``png`` or ``jpg``.
        points_per_image: sample points of the dense line.
        qa_per_image: QA lines per image.
        workers: processes (1 = in this process). Output does not depend on it.
        progress: show a tqdm bar.
        jsonl_name: name of the combined annotation file.
        split_by_kind: also write ``synthetic_<kind>.jsonl``.
        world: a name of :data:`~.constants.WORLDS` (``v2``: real-world sizes, generator 2.0;
            ``mount`` / ``robot``: one robot's camera mount / mount and camera; ``v1``:
            reproduces 1.0 files).
        scene_qa: add the scene-kind and named-object lines (False: the lines earlier
            versions wrote, nothing else).

    Returns:
        The metadata written to ``meta.json``: ``frames_per_s`` is frames per second of
        (wall-clock) render time in one process, ``cpu_frames_per_s`` the same per CPU second
        (fairer on a busy machine), ``wall_frames_per_s`` end to end with file writing.

    Raises:
        InputError: negative counts, nothing to do, bad format, worker count or world.
    """
    _check_arguments(n_indoor, n_outdoor, seed, width, height, fx, image_format,
                     points_per_image, qa_per_image, workers)
    if world not in WORLDS:
        raise InputError(f"world must be one of {tuple(WORLDS)}, got {world!r}")
    out = Path(out_dir)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    tasks = [_ImageTask(str(out), kind, i, scene_seed(seed, kind, i), width, height, fx,
                        image_format, points_per_image, qa_per_image, world, bool(scene_qa))
             for kind, count in (("indoor", n_indoor), ("outdoor", n_outdoor))
             for i in range(count)]
    t0 = time.perf_counter()
    results, render_s, render_cpu_s = _run_tasks(tasks, workers, progress)
    wall = time.perf_counter() - t0
    all_lines = [ln for lines in results for ln in lines]
    file_names = _write_jsonl_files(out, all_lines, jsonl_name, split_by_kind)
    n = len(tasks)
    meta = {
        "generator": "depthvlm_ros.core.bench.synthetic",
        "generator_version": WORLDS[world],
        "world": world,
        "seed": int(seed),
        "scene_seed_rule": "numpy SeedSequence([seed, kind_id (indoor 1, outdoor 2), index])"
                           ".generate_state(1, uint32)[0]",
        "n_indoor": int(n_indoor),
        "n_outdoor": int(n_outdoor),
        "n_lines": len(all_lines),
        "scene_qa": bool(scene_qa),
        "qa_counts": {t: sum(1 for ln in all_lines if ln["qa_type"] == t)
                      for t in ("dense_depth",) + ALL_QA_TYPES},
        "width": width, "height": height, "fx": fx,
        "image_format": "jpg" if image_format == "jpeg" else image_format,
        "depth_scale": DEPTH_SCALE,
        "max_depth": MAX_DEPTH,
        "workers": int(workers),
        "render_seconds": round(render_s, 3),
        "render_cpu_seconds": round(render_cpu_s, 3),
        "wall_seconds": round(wall, 3),
        "frames_per_s": round(n / render_s, 2) if render_s > 0 else None,
        "cpu_frames_per_s": round(n / render_cpu_s, 2) if render_cpu_s > 0 else None,
        "wall_frames_per_s": round(n / wall, 2) if wall > 0 else None,
        "files": file_names,
    }
    with open(out / "meta.json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    return meta


def benchmark_summary(meta: dict, out_dir: str | os.PathLike) -> str:
    """Two human-readable lines about a :func:`write_benchmark` run (counts, frames per second).

    Args:
        meta: what :func:`write_benchmark` returned.
        out_dir: the folder it wrote, as the user named it.
    """
    n = meta["n_indoor"] + meta["n_outdoor"]
    return (f"wrote {n} images ({meta['n_indoor']} indoor, {meta['n_outdoor']} outdoor) and "
            f"{meta['n_lines']} annotation lines to {out_dir}\n"
            f"render: {meta['frames_per_s']} frames/s per process "
            f"({meta['render_seconds']} s rendering; {meta['cpu_frames_per_s']} frames per CPU "
            f"second); end to end with file writing: "
            f"{meta['wall_frames_per_s']} frames/s over {meta['wall_seconds']} s "
            f"with {meta['workers']} worker(s)")
