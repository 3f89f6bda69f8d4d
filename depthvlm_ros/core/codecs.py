"""Image codecs of ROS recordings and drivers: JPEG / PNG colour, compressedDepth (PNG, RVL).

What robots publish and record instead of raw ``sensor_msgs/Image``:

* ``sensor_msgs/CompressedImage`` colour from image_transport's ``compressed`` plugin. Its
  ``format`` names the source encoding, the codec and what the codec decodes to, e.g.
  ``rgb8; jpeg compressed bgr8`` or ``bgr8; png compressed bgr8``; older publishers write just
  ``jpeg`` or ``png``. The JPEG / PNG stream itself is standard (the channel order is the
  file's, not the format string's), so it decodes to RGB whatever the tail says.
* depth from the ``compressedDepth`` plugin (compressed_depth_image_transport):
  ``16UC1; compressedDepth png`` (or ``... rvl``; a bare ``compressedDepth`` means png). The
  data is a 12-byte ``ConfigHeader`` (int32 format, float32 depthQuantA, float32 depthQuantB,
  little-endian), then either a 16-bit PNG or ``uint32 cols, uint32 rows`` and an RVL stream
  (Wilson, "Fast Lossless Depth Image Compression", ISS 2017). ``16UC1`` stores millimetres
  (0 = no reading); ``32FC1`` stores quantised inverse depth ``v = A / z + B``, decoded as
  ``z = A / (v - B)`` (0 = no reading).

Decoders return the package's arrays: colour (H, W, 3) uint8 RGB, depth float32 metres with NaN
where there is no reading. An unsupported format or encoding raises :class:`EncodingError`
(the ``bad_encoding`` drop); data that does not decode raises
:class:`~depthvlm_ros.core.errors.InputError` (``bad_image``). JPEG goes through ``simplejpeg``
(libjpeg-turbo, about twice Pillow's speed on the same frames, bit-identical output; see
:mod:`depthvlm_ros.core.perf.decode`) when it is installed, through Pillow otherwise.

The encoders write the same layouts (test bags, sample bags, benchmarks). ROS-free.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["EncodingError", "COLOR_SOURCE_ENCODINGS", "DEPTH_SOURCE_ENCODINGS",
           "CONFIG_HEADER_SIZE", "jpeg_backend", "parse_color_format", "parse_depth_format",
           "is_compressed_depth", "decode_color", "decode_compressed_depth", "encode_color",
           "encode_compressed_depth", "rvl_encode", "rvl_decode", "millimetres_to_metres",
           "metres_to_millimetres"]


class EncodingError(InputError):
    """An image encoding or compressed format that is not supported (a ``bad_encoding`` drop)."""


#: Source encodings of a colour CompressedImage (the part of ``format`` before ``;``).
COLOR_SOURCE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "8UC4")

#: Source encodings of a compressedDepth image, with what its 16-bit payload holds.
DEPTH_SOURCE_ENCODINGS = {"16UC1": "millimetres", "mono16": "millimetres",
                          "32FC1": "inverse depth"}

#: Bytes of compressed_depth_image_transport's ConfigHeader (int32 + 2 float32).
CONFIG_HEADER_SIZE = 12
_CONFIG_HEADER = struct.Struct("<iff")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAX_SIDE = 16384  # core.frames.MAX_IMAGE_SIDE (frames imports this module)


def _simplejpeg():
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def jpeg_backend() -> str:
    """``simplejpeg`` when it is installed (the faster decoder), else ``pillow``."""
    return "simplejpeg" if _simplejpeg() is not None else "pillow"


def _as_bytes(data: Any, what: str) -> bytes:
    if data is None:
        raise InputError(f"{what}: message has no data")
    if isinstance(data, bytes):
        return data
    try:
        return memoryview(data).cast("B").tobytes()
    except TypeError:
        pass
    arr = np.asarray(data)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "ui"):
        raise InputError(f"{what}: data must be a flat sequence of bytes")
    return arr.astype(np.uint8).tobytes()


def _check_side(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{what}: empty image ({width}x{height})")
    if width > _MAX_SIDE or height > _MAX_SIDE:
        raise InputError(f"{what}: {width}x{height} exceeds the limit of {_MAX_SIDE} pixels "
                         "per side")


# ------------------------------------------------------------------------------------------
# format strings


def is_compressed_depth(fmt: str) -> bool:
    """Whether a CompressedImage ``format`` is compressed_depth_image_transport's."""
    return "compresseddepth" in str(fmt).lower()


def parse_color_format(fmt: Any) -> str:
    """The codec (``jpeg`` or ``png``) of a colour CompressedImage ``format``.

    Raises:
        EncodingError: not a string, a compressedDepth (depth) format, a source encoding that
            is not colour (16-bit, float), or no JPEG / PNG codec named.
    """
    if not isinstance(fmt, str):
        raise EncodingError(f"compressed image format must be a string, got {fmt!r}")
    if is_compressed_depth(fmt):
        raise EncodingError(f"format {fmt!r} is compressedDepth (a depth image), not colour")
    source, sep, rest = fmt.partition(";")
    if sep and source.strip() not in COLOR_SOURCE_ENCODINGS:
        raise EncodingError(f"compressed image of encoding {source.strip()!r} is not colour; "
                            f"expected one of {', '.join(COLOR_SOURCE_ENCODINGS)}")
    words = (rest if sep else source).lower().replace(",", " ").split()
    if "jpeg" in words or "jpg" in words:
        return "jpeg"
    if "png" in words:
        return "png"
    raise EncodingError(f"unsupported compressed image format {fmt!r}; expected JPEG or PNG "
                        "(e.g. 'rgb8; jpeg compressed bgr8')")


def parse_depth_format(fmt: Any) -> tuple[str, str]:
    """``(source encoding, codec)`` of a compressedDepth ``format``: codec ``png`` or ``rvl``.

    Raises:
        EncodingError: not compressedDepth, an unknown codec, or a source encoding other than
            16UC1 / mono16 (millimetres) or 32FC1 (metres).
    """
    if not isinstance(fmt, str) or not is_compressed_depth(fmt):
        raise EncodingError(f"format {fmt!r} is not compressedDepth (e.g. '16UC1; "
                            "compressedDepth png')")
    source, sep, rest = fmt.partition(";")
    tail = rest.lower().split("compresseddepth", 1)[1].split() if sep else []
    codec = tail[0] if tail else "png"  # a bare 'compressedDepth' is png (the older plugin)
    if codec not in ("png", "rvl"):
        raise EncodingError(f"unsupported compressedDepth codec {codec!r} in {fmt!r} "
                            "(png or rvl)")
    source = source.strip() if sep else ""
    if source not in DEPTH_SOURCE_ENCODINGS:
        raise EncodingError(f"compressedDepth of encoding {source!r} is not depth; expected "
                            f"one of {', '.join(DEPTH_SOURCE_ENCODINGS)}")
    return source, codec


# ------------------------------------------------------------------------------------------
# colour


def _pillow_open(data: bytes, what: str):
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad streams
        raise InputError(f"{what}: cannot decode: {exc}") from None
    _check_side(img.width, img.height, what)
    return img


def _pillow_rgb(data: bytes, what: str) -> np.ndarray:
    img = _pillow_open(data, what)
    if img.mode.startswith("I") or img.mode == "F":
        raise EncodingError(f"{what}: a {img.mode} (16-bit or float) image is not colour")
    try:
        return np.asarray(img.convert("RGB")).copy()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise InputError(f"{what}: cannot decode: {exc}") from None


def _simplejpeg_rgb(sj, data: bytes, what: str) -> np.ndarray | None:
    """RGB through simplejpeg, or None for colour spaces it does not convert (CMYK...)."""
    try:
        h, w, colorspace, _ = sj.decode_jpeg_header(data)
    except ValueError as exc:
        raise InputError(f"{what}: cannot decode: {exc}") from None
    _check_side(w, h, what)
    if colorspace not in ("YCbCr", "Gray", "RGB"):
        return None
    try:
        # strict: a truncated or corrupt stream is an error, not a grey-filled frame.
        return sj.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise InputError(f"{what}: cannot decode: {exc}") from None


def decode_color(fmt: Any, data: Any, jpeg_decoder: str = "auto") -> np.ndarray:
    """A colour ``sensor_msgs/CompressedImage`` as (H, W, 3) uint8 RGB.

    Args:
        fmt: the message's ``format`` (see :func:`parse_color_format`).
        data: its ``data`` (bytes, ``array('B')``, uint8 array).
        jpeg_decoder: ``auto`` (see :func:`jpeg_backend`), ``simplejpeg`` or ``pillow``.

    Raises:
        EncodingError: see :func:`parse_color_format`; a 16-bit PNG.
        InputError: the data is not the format's stream, is truncated or corrupt, or is empty
            or larger than 16384 pixels per side.
    """
    codec = parse_color_format(fmt)
    raw = _as_bytes(data, f"{codec} image")
    what = f"{codec} image ({len(raw)} bytes)"
    magic = _JPEG_MAGIC if codec == "jpeg" else _PNG_MAGIC
    if not raw.startswith(magic):
        raise InputError(f"{what}: data is not a {codec.upper()} stream (format {fmt!r})")
    if codec == "jpeg":
        sj = _simplejpeg() if jpeg_decoder in ("auto", "simplejpeg") else None
        if jpeg_decoder == "simplejpeg" and sj is None:
            raise ImportError("simplejpeg is not installed")
        if sj is not None:
            rgb = _simplejpeg_rgb(sj, raw, what)
            if rgb is not None:
                return rgb
    return _pillow_rgb(raw, what)


def encode_color(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90,
                 source_encoding: str = "rgb8") -> tuple[str, bytes]:
    """``(format, data)`` of a colour CompressedImage as image_transport's plugin writes it.

    Raises:
        InputError: not (H, W, 3) uint8, or an unknown codec.
    """
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"colour image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if codec not in ("jpeg", "png"):
        raise InputError(f"codec must be jpeg or png, got {codec!r}")
    buf = io.BytesIO()
    if codec == "jpeg":
        Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality))
    else:
        Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    return f"{source_encoding}; {codec} compressed bgr8", buf.getvalue()


# ------------------------------------------------------------------------------------------
# depth


def millimetres_to_metres(mm: np.ndarray) -> np.ndarray:
    """uint16 millimetres (0 = no reading) as float32 metres, NaN where 0.

    The one conversion for 16UC1 depth, raw or compressed, so both give the same floats.
    """
    out = mm.astype(np.float32) * np.float32(0.001)
    out[mm == 0] = np.nan
    return out


def metres_to_millimetres(depth: np.ndarray) -> np.ndarray:
    """float32 metres as uint16 millimetres (REP 118's 16UC1): rounded, 0 where NaN, not
    positive or beyond 65.535 m."""
    d = np.asarray(depth, dtype=np.float32)
    mm = np.rint(d * np.float32(1000.0))
    valid = np.isfinite(mm) & (mm >= 1) & (mm <= 65535)
    return np.where(valid, mm, 0).astype(np.uint16)


def _png_uint16(payload: bytes, what: str) -> np.ndarray:
    if not payload.startswith(_PNG_MAGIC):
        raise InputError(f"{what}: the data after the 12-byte header is not a PNG stream")
    img = _pillow_open(payload, what)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise InputError(f"{what}: PNG is {img.mode}, not 16-bit grey")
    try:
        arr = np.asarray(img)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise InputError(f"{what}: cannot decode: {exc}") from None
    return arr.astype(np.uint16)


def _rvl_image(payload: bytes, what: str) -> np.ndarray:
    if len(payload) < 8:
        raise InputError(f"{what}: RVL data shorter than its 8-byte size")
    cols, rows = struct.unpack("<II", payload[:8])
    _check_side(cols, rows, what)
    # The plugin's own guard: RVL never compresses better than ~1:5 (in pixels per byte).
    if rows * cols > len(payload) * 5:
        raise InputError(f"{what}: RVL size {cols}x{rows} is implausible for {len(payload)} "
                         "bytes")
    return rvl_decode(payload[8:], rows * cols).reshape(rows, cols)


def decode_compressed_depth(fmt: Any, data: Any) -> np.ndarray:
    """A compressedDepth ``sensor_msgs/CompressedImage`` as float32 metres, NaN invalid.

    Raises:
        EncodingError: see :func:`parse_depth_format`.
        InputError: data no longer than the 12-byte header, a payload that is not PNG / RVL,
            truncated or corrupt data, or an empty / oversized image.
    """
    source, codec = parse_depth_format(fmt)
    raw = _as_bytes(data, "compressedDepth image")
    what = f"compressedDepth {codec} ({len(raw)} bytes)"
    if len(raw) <= CONFIG_HEADER_SIZE:
        raise InputError(f"{what}: no image after the {CONFIG_HEADER_SIZE}-byte header")
    _, quant_a, quant_b = _CONFIG_HEADER.unpack(raw[:CONFIG_HEADER_SIZE])
    payload = raw[CONFIG_HEADER_SIZE:]
    values = _png_uint16(payload, what) if codec == "png" else _rvl_image(payload, what)
    if DEPTH_SOURCE_ENCODINGS[source] == "millimetres":
        return millimetres_to_metres(values)
    v = values.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (v - np.float32(quant_b))
    depth[values == 0] = np.nan
    return depth.astype(np.float32)


def encode_compressed_depth(depth_m: np.ndarray, encoding: str = "16UC1", codec: str = "png",
                            depth_max: float = 10.0, depth_quantization: float = 100.0
                            ) -> tuple[str, bytes]:
    """``(format, data)`` of a compressedDepth image as the plugin writes it.

    ``16UC1`` stores :func:`metres_to_millimetres` (then the plugin's ``depth_max`` cut);
    ``32FC1`` the quantised inverse depth with ``depthQuantA = q (q + 1)``,
    ``depthQuantB = 1 - A / depth_max`` (``q`` = ``depth_quantization``).

    Raises:
        InputError: not 2-D, or an unknown encoding or codec.
    """
    from PIL import Image

    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {d.shape}")
    if codec not in ("png", "rvl"):
        raise InputError(f"codec must be png or rvl, got {codec!r}")
    if encoding in ("16UC1", "mono16"):
        quant_a = quant_b = 0.0
        values = metres_to_millimetres(d)
        values[values > int(depth_max * 1000.0)] = 0
    elif encoding == "32FC1":
        quant_a = np.float32(depth_quantization * (depth_quantization + 1.0))
        quant_b = np.float32(1.0 - quant_a / np.float32(depth_max))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.trunc(quant_a / d + quant_b)
        ok = np.isfinite(d) & (d > 0) & (d < depth_max)
        values = np.where(ok, np.clip(np.nan_to_num(inv), 0, 65535), 0).astype(np.uint16)
    else:
        raise InputError(f"compressedDepth encoding must be 16UC1 or 32FC1, got {encoding!r}")
    if codec == "png":
        buf = io.BytesIO()
        Image.fromarray(values).save(buf, "PNG", compress_level=1)
        payload = buf.getvalue()
    else:
        rows, cols = values.shape
        payload = struct.pack("<II", cols, rows) + rvl_encode(values.reshape(-1))
    header = _CONFIG_HEADER.pack(0, float(quant_a), float(quant_b))
    return f"{encoding}; compressedDepth {codec}", header + payload


# ------------------------------------------------------------------------------------------
# RVL (run-length of zeros + variable-length zig-zag deltas, 3 bits per nibble, 8 nibbles
# per little-endian 32-bit word, first nibble in the high bits)

_NIBBLE_SHIFTS = np.arange(28, -1, -4, dtype=np.uint32)


def _vle_counts(values: np.ndarray) -> np.ndarray:
    """Nibbles per value (3 payload bits each, at least one)."""
    bits = np.zeros(values.shape, dtype=np.int64)
    v = values.astype(np.int64)
    while np.any(v):
        bits += v > 0
        v = v >> 3
    return np.maximum(bits, 1)


def rvl_encode(pixels: np.ndarray) -> bytes:
    """The RVL stream of a flat uint16 array (as compressed_depth_image_transport writes it)."""
    px = np.asarray(pixels, dtype=np.uint16).reshape(-1)
    nonzero = px != 0
    # Runs alternate zeros / nonzeros, starting with a (possibly empty) zero run.
    edges = np.flatnonzero(np.diff(nonzero.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [px.size]])
    if px.size and nonzero[0]:
        bounds = np.concatenate([[0], bounds])
    seq: list[np.ndarray] = []
    previous = 0
    for i in range(0, len(bounds) - 1, 2):
        zeros = bounds[i + 1] - bounds[i]
        end = bounds[i + 2] if i + 2 < len(bounds) else bounds[i + 1]
        run = px[bounds[i + 1]:end].astype(np.int64)
        deltas = np.diff(np.concatenate([[previous], run]))
        zigzag = (deltas << 1) ^ (deltas >> 63)
        seq.append(np.array([zeros, run.size], dtype=np.int64))
        seq.append(zigzag)
        if run.size:
            previous = int(run[-1])
    values = np.concatenate(seq) if seq else np.zeros(0, dtype=np.int64)
    counts = _vle_counts(values)
    owner = np.repeat(np.arange(values.size), counts)
    first = np.cumsum(counts) - counts
    k = np.arange(owner.size) - first[owner]
    nibbles = (values[owner] >> (3 * k)) & 0x7
    nibbles |= np.where(k < counts[owner] - 1, 0x8, 0)
    nibbles = np.concatenate([nibbles, np.zeros((-nibbles.size) % 8, dtype=np.int64)])
    words = (nibbles.reshape(-1, 8).astype(np.uint32) << _NIBBLE_SHIFTS).sum(
        axis=1, dtype=np.uint64).astype("<u4")
    return words.tobytes()


def rvl_decode(stream: bytes, num_pixels: int) -> np.ndarray:
    """``num_pixels`` uint16 values from an RVL stream.

    Raises:
        InputError: the stream ends early, describes more pixels than ``num_pixels``, or has
            a value longer than 30 bits.
    """
    words = np.frombuffer(stream[: len(stream) // 4 * 4], dtype="<u4")
    nibbles = ((words[:, None] >> _NIBBLE_SHIFTS) & 0xF).reshape(-1).astype(np.int64)
    ends = np.flatnonzero((nibbles & 0x8) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    if ends.size:
        owner = np.repeat(np.arange(ends.size), ends - starts + 1)
        k = np.arange(ends[-1] + 1) - starts[owner]
        if k.max() > 9:
            raise InputError("RVL stream has a value longer than 30 bits (corrupt data)")
        values = np.add.reduceat((nibbles[: ends[-1] + 1] & 0x7) << (3 * k), starts)
    else:
        values = np.zeros(0, dtype=np.int64)
    listed = values.tolist()
    pixel, p, n_values = 0, 0, len(listed)
    runs: list[tuple[int, int, int]] = []  # (first pixel, count, first delta index)
    while pixel < num_pixels:
        if p + 2 > n_values:
            raise InputError(f"RVL stream ends after {pixel} of {num_pixels} pixels")
        zeros, count = listed[p], listed[p + 1]
        p += 2
        pixel += zeros
        if pixel + count > num_pixels or p + count > n_values:
            raise InputError(f"RVL stream describes more than {num_pixels} pixels or ends "
                             "inside a run")
        if count:
            runs.append((pixel, count, p))
        pixel += count
        p += count
    out = np.zeros(num_pixels, dtype=np.uint16)
    if runs:
        first, count, at = (np.array(c, dtype=np.int64) for c in zip(*runs))
        offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        zigzag = values[np.repeat(at, count) + offsets]
        deltas = (zigzag >> 1) ^ -(zigzag & 1)
        # 'previous' carries over runs and wraps like the codec's uint16 arithmetic.
        out[np.repeat(first, count) + offsets] = (np.cumsum(deltas) & 0xFFFF).astype(np.uint16)
    return out
