"""Ratio benchmark of the JPEG decoders a compressed camera stream goes through.

:func:`bench_jpeg_decode` decodes the same JPEG frames with Pillow and with ``simplejpeg``
(both libjpeg-turbo; simplejpeg skips Pillow's file-object and mode-conversion layers), taking
turns per repeat as every benchmark here does (:mod:`.timing`), at 640x480 and 1920x1080, and
reports the medians and the ratio ``pillow / simplejpeg`` (above 1: simplejpeg is faster), and
whether both give the same pixels. The frames are rendered indoor scenes of the synthetic
benchmark (textures, edges and shading, not noise, whose entropy no camera produces), encoded
at quality 90 as a camera driver would.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from .. import codecs
from .timing import ratio_of_medians, say, summarize

__all__ = ["DECODE_SIZES", "bench_jpeg_decode"]

#: Frame sizes of :func:`bench_jpeg_decode` (width, height).
DECODE_SIZES = ((640, 480), (1920, 1080))


def _frame_jpeg(width: int, height: int, seed: int) -> bytes:
    from ..bench.synthetic import render_scene

    scene = render_scene(seed, "indoor", width=width, height=height)
    return codecs.encode_color(np.ascontiguousarray(scene.rgb), "jpeg", quality=90)[1]


def bench_jpeg_decode(sizes: Sequence[tuple[int, int]] = DECODE_SIZES, repeats: int = 30,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Pillow against simplejpeg on the same JPEG frames, interleaved.

    Returns:
        ``{"backend": the decoder the package uses, "sizes": [{"width", "height", "bytes",
        "pillow": summary, "simplejpeg": summary or None, "ratio": pillow / simplejpeg (NaN
        without simplejpeg), "identical": bool or None}]}``; summaries are
        :func:`~.timing.summarize` (milliseconds).
    """
    fmt = "rgb8; jpeg compressed bgr8"
    have_simplejpeg = codecs.jpeg_backend() == "simplejpeg"
    out = {"backend": codecs.jpeg_backend(), "sizes": []}
    for w, h in sizes:
        data = _frame_jpeg(w, h, seed=w)
        times: dict[str, list[float]] = {"pillow": [], "simplejpeg": []}
        decoders = ["pillow"] + (["simplejpeg"] if have_simplejpeg else [])
        for _ in range(max(1, repeats)):
            for name in decoders:
                t0 = time.perf_counter()
                codecs.decode_color(fmt, data, jpeg_decoder=name)
                times[name].append(time.perf_counter() - t0)
        identical = None
        if have_simplejpeg:
            identical = bool(np.array_equal(codecs.decode_color(fmt, data, "pillow"),
                                            codecs.decode_color(fmt, data, "simplejpeg")))
        row = {"width": w, "height": h, "bytes": len(data), "pillow": summarize(times["pillow"]),
               "simplejpeg": summarize(times["simplejpeg"]) if have_simplejpeg else None,
               "ratio": ratio_of_medians(times["pillow"], times["simplejpeg"]),
               "identical": identical}
        out["sizes"].append(row)
        say(progress, f"jpeg decode {w}x{h} ({len(data)} B): pillow "
                      f"{row['pillow']['median_ms']:.2f} ms"
                      + (f", simplejpeg {row['simplejpeg']['median_ms']:.2f} ms, ratio "
                         f"{row['ratio']:.2f}, identical {identical}" if have_simplejpeg else ""))
    return out
