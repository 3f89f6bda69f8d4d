"""Robot recordings: compressed colour, compressedDepth GT (PNG, RVL), depth at the depth
sensor's own resolution, realsense2_camera and ZED topic layouts, /tf_static and IMU beside
them, mcap and sqlite3; the codecs underneath; topic discovery; replay of real frames."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from depthvlm_ros.cli import main as cli_main
from depthvlm_ros.core import codecs
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.core.frames import FrameDropped, cloud_points, color_frame, depth_on_grid
from depthvlm_ros.core.pipeline import DepthVLMPipeline

rosbags = pytest.importorskip("rosbags")

from depthvlm_ros.bags import (ReplayOptions, SampleFrame, discover_cameras,  # noqa: E402
                               make_typestore, open_reader, replay_bag)
from depthvlm_ros.bags import messages as bagconv  # noqa: E402
from depthvlm_ros.bags.sample import write_robot_bag  # noqa: E402
from kinect_frame import KINECT_K, downscale, load_kinect_depth_mm  # noqa: E402

START = 1_700_000_000 * 1_000_000_000
PERIOD = 100_000_000
COLOUR = Intrinsics(**KINECT_K).scaled(160, 90)
# A depth sensor of its own: another resolution, aspect ratio and field of view.
DEPTH_SENSOR = Intrinsics(65.0, 65.0, 63.5, 39.5, 128, 80)


# ------------------------------------------------------------------------------------------
# codecs


def _reference_rvl(px: list[int]) -> bytes:
    """RVL as compressed_depth_image_transport's C++ writes it, one nibble at a time."""
    words, state = [], {"word": 0, "n": 0}

    def vle(v: int) -> None:
        while True:
            nibble, v = v & 7, v >> 3
            state["word"] = ((state["word"] << 4) | nibble | (8 if v else 0)) & 0xFFFFFFFF
            state["n"] += 1
            if state["n"] == 8:
                words.append(state["word"])
                state.update(word=0, n=0)
            if not v:
                return

    i, previous = 0, 0
    while i < len(px):
        zeros = 0
        while i < len(px) and px[i] == 0:
            i, zeros = i + 1, zeros + 1
        vle(zeros)
        count = 0
        while i + count < len(px) and px[i + count]:
            count += 1
        vle(count)
        for value in px[i:i + count]:
            delta = value - previous
            vle(((delta << 1) ^ (delta >> 31)) & 0xFFFFFFFF)
            previous = value
        i += count
    if state["n"]:
        words.append((state["word"] << 4 * (8 - state["n"])) & 0xFFFFFFFF)
    return struct.pack(f"<{len(words)}I", *words)


@pytest.mark.parametrize("seed", range(6))
def test_rvl_matches_the_reference_codec_and_round_trips(seed):
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 65536, int(rng.integers(1, 2000))).astype(np.uint16)
    px[rng.random(px.size) < rng.random()] = 0
    px[: seed % 3] = 0
    stream = codecs.rvl_encode(px)
    assert stream == _reference_rvl(px.tolist())
    np.testing.assert_array_equal(codecs.rvl_decode(stream, px.size), px)
    with pytest.raises(InputError):
        codecs.rvl_decode(stream[: len(stream) // 2], px.size)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_compressed_depth_layout_and_round_trip(codec):
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.3, 9.0, (30, 40)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = np.nan
    fmt, data = codecs.encode_compressed_depth(depth, "16UC1", codec)
    assert fmt == f"16UC1; compressedDepth {codec}"
    assert struct.unpack("<iff", data[:12]) == (0, 0.0, 0.0)  # ConfigHeader: INV_DEPTH, A, B
    assert data[12:20] == (b"\x89PNG\r\n\x1a\n" if codec == "png" else struct.pack("<II", 40, 30))
    out = codecs.decode_compressed_depth(fmt, data)
    # Millimetres are exact: the same floats as the raw 16UC1 image.
    np.testing.assert_array_equal(out, codecs.millimetres_to_metres(
        codecs.metres_to_millimetres(depth)))
    fmt, data = codecs.encode_compressed_depth(depth, "32FC1", codec)
    a, b = struct.unpack("<iff", data[:12])[1:]
    assert a == pytest.approx(100 * 101) and b == pytest.approx(1 - a / 10.0)
    out = codecs.decode_compressed_depth(fmt, data)
    assert np.array_equal(np.isnan(out), np.isnan(depth))
    # Inverse-depth quantisation: the error grows with z^2 / A.
    ok = np.isfinite(depth)
    assert np.all(np.abs(out[ok] - depth[ok]) <= depth[ok] ** 2 / a * 1.01 + 1e-6)


def test_colour_codecs_and_decoders_agree():
    rgb = downscale(np.random.default_rng(2).integers(0, 256, (90, 120, 3), dtype=np.uint8),
                    96, 72)
    fmt, png = codecs.encode_color(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(codecs.decode_color(fmt, png), rgb)  # lossless, RGB order
    fmt, jpeg = codecs.encode_color(rgb, "jpeg")
    pillow = codecs.decode_color(fmt, jpeg, jpeg_decoder="pillow")
    assert pillow.shape == rgb.shape and np.abs(pillow.astype(int) - rgb).mean() < 40
    if codecs.jpeg_backend() == "simplejpeg":
        np.testing.assert_array_equal(codecs.decode_color(fmt, jpeg), pillow)
    for old_style in ("jpeg", "JPEG", "bgr8; jpeg compressed rgb8"):
        assert codecs.parse_color_format(old_style) == "jpeg"
    mono = codecs.encode_color(rgb, "png", source_encoding="mono8")[0]
    assert codecs.parse_color_format(mono) == "png"


BAD_COLOUR = {
    # format, data -> drop reason
    "truncated jpeg": ("rgb8; jpeg compressed bgr8", "truncate"),
    "png bytes under a jpeg format": ("rgb8; jpeg compressed bgr8", "png"),
    "corrupt png": ("rgb8; png compressed bgr8", "corrupt png"),
    "unknown codec": ("rgb8; tiff compressed bgr8", "jpeg"),
    "no format": ("", "jpeg"),
    "depth format": ("16UC1; compressedDepth png", "jpeg"),
    "16-bit source": ("16UC1; png compressed", "png"),
}
REASON = {"truncated jpeg": "bad_image", "png bytes under a jpeg format": "bad_image",
          "corrupt png": "bad_image"}


def _bad_payload(kind: str, rgb: np.ndarray) -> bytes:
    jpeg, png = codecs.encode_color(rgb, "jpeg")[1], codecs.encode_color(rgb, "png")[1]
    return {"truncate": jpeg[: len(jpeg) // 2], "png": png, "jpeg": jpeg,
            "corrupt png": png[:40] + bytes(200) + png[240:]}[kind]


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
def test_bad_colour_streams_are_named_drops(decoder, monkeypatch):
    if decoder == "pillow":
        monkeypatch.setattr(codecs, "_simplejpeg", lambda: None)
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)

    class Msg:  # the attributes of a CompressedImage, as rclpy and rosbags both have them
        def __init__(self, fmt, data):
            self.format, self.data = fmt, data

    for name, (fmt, kind) in BAD_COLOUR.items():
        with pytest.raises(FrameDropped) as info:
            color_frame(Msg(fmt, _bad_payload(kind, rgb)), bagconv.image_rgb)
        assert info.value.reason == REASON.get(name, "bad_encoding"), name


def test_compressed_depth_without_png_is_an_error():
    header = struct.pack("<iff", 0, 0.0, 0.0)
    for data in (header, header + b"not a png at all", header[:8]):
        with pytest.raises(InputError) as info:
            codecs.decode_compressed_depth("16UC1; compressedDepth png", data)
        assert not isinstance(info.value, codecs.EncodingError)
    with pytest.raises(codecs.EncodingError):
        codecs.decode_compressed_depth("16UC1; compressedDepth zstd", header + b"x")
    with pytest.raises(codecs.EncodingError):
        codecs.decode_compressed_depth("rgb8; compressedDepth png", header + b"x")


# ------------------------------------------------------------------------------------------
# frame rules


def test_depth_on_grid_reprojects_by_intrinsics():
    colour = Intrinsics(100.0, 100.0, 49.5, 29.5, 100, 60)
    # Depth varying along u on the colour grid, sampled by a sensor of another size / FOV.
    truth = np.tile(np.linspace(1.0, 3.0, 100, dtype=np.float32), (60, 1))
    sensor = depth_on_grid(truth, colour, DEPTH_SENSOR)
    assert sensor.shape == (80, 128) and np.isnan(sensor).any()  # wider FOV: edges unseen
    back = depth_on_grid(sensor, DEPTH_SENSOR, colour)
    ok = np.isfinite(back)
    assert ok.mean() > 0.9
    assert np.abs(back[ok] - truth[ok]).max() < 0.05  # within a pixel or two of the ramp
    assert depth_on_grid(truth, colour, colour) is truth  # registered depth: as is
    half = depth_on_grid(truth[::2, ::2], None, colour)  # same camera, half resolution
    assert half.shape == truth.shape and np.isfinite(half).all()
    with pytest.raises(InputError):
        depth_on_grid(truth[:, :40], None, colour)  # another aspect and no intrinsics


def test_cloud_points_stride_and_range():
    intr = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    depth = np.full((48, 64), 2.0, np.float32)
    depth[:, :8] = 0.2
    depth[:, -8:] = 20.0
    full, _ = cloud_points(depth, intr)
    points, rgb = cloud_points(depth, intr, np.zeros((48, 64, 3), np.uint8), stride=4,
                               min_range=0.5, max_range=10.0)
    assert points.shape == (12, 16, 3) and rgb.shape == (12, 16, 3)
    kept = np.isfinite(points[..., 2])
    assert not kept[:, :2].any() and not kept[:, -2:].any() and kept[:, 2:-2].all()
    np.testing.assert_allclose(points[kept], full[::4, ::4][kept], rtol=1e-6)


# ------------------------------------------------------------------------------------------
# bags


def _kinect_frames(n: int, depth_sensor: Intrinsics | None) -> list[SampleFrame]:
    """The real Kinect frame (colour 160x90), GT from its registered depth, either on the
    colour grid or resampled into a depth sensor of its own."""
    from kinect_frame import load_kinect_rgb

    full = Intrinsics(**KINECT_K)
    rgb = downscale(load_kinect_rgb(), COLOUR.width, COLOUR.height)
    depth = codecs.millimetres_to_metres(load_kinect_depth_mm())
    gt = depth_on_grid(depth, full, depth_sensor or COLOUR)
    frames = []
    for i in range(n):
        # Three different images of one scene: as is, mirrored, darker.
        img = [rgb, np.ascontiguousarray(rgb[:, ::-1]), (rgb * 0.7).astype(np.uint8)][i % 3]
        frames.append(SampleFrame(img, COLOUR, gt, START + i * PERIOD, depth_sensor))
    return frames


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(tiny_model_dir),
                                                       device="cpu", head_backend="torch"))


def _gt_depths(bag, topic) -> list[np.ndarray]:
    ts = make_typestore()
    reader = open_reader(bag)
    try:
        return [bagconv.depth_message_m(ts.deserialize_cdr(raw, c.msgtype))
                for c, _, raw in reader.messages() if c.topic == topic]
    finally:
        reader.close()


def _replay_cli(bag, out, model_dir, *extra) -> int:
    return cli_main(["replay", str(bag), "--out", str(out), "--model", str(model_dir),
                     "--device", "cpu", "--head-backend", "torch", "--no-progress", *extra])


@pytest.mark.parametrize("storage,depth_codec", [("mcap", "png"), ("sqlite3", "rvl")])
def test_realsense_bag_of_real_frames_scores_like_the_raw_bag(tmp_path, tiny_model_dir, pipe,
                                                               storage, depth_codec, capsys):
    frames = _kinect_frames(3, DEPTH_SENSOR)
    compressed = write_robot_bag(tmp_path / "rs", frames, "realsense", storage, "jpeg",
                                 depth_codec, depth_stamp_offset_ns=2_000_000)
    # The same frames stored raw: the JPEG's decoded pixels, the same millimetres.
    decoded = [SampleFrame(codecs.decode_color(*codecs.encode_color(f.rgb, "jpeg")),
                           f.intrinsics, f.depth, f.stamp_ns, f.depth_intrinsics)
               for f in frames]
    raw = write_robot_bag(tmp_path / "raw", decoded, "realsense", storage, "raw", "raw",
                          depth_stamp_offset_ns=2_000_000)

    # No topic options: the bag's one camera, its camera_info and its depth are found.
    assert _replay_cli(tmp_path / "rs", tmp_path / "out_rs", tiny_model_dir,
                       "--sync-tolerance", "0.005") == 0
    printed = capsys.readouterr().out
    assert f"camera: image {compressed['image']}" in printed
    assert f"GT depth {compressed['gt_depth']} (camera_info {compressed['gt_camera_info']})" \
        in printed
    assert "frames: 3 in bag, 3 processed" in printed and "0 bad" in printed
    result = json.loads((tmp_path / "out_rs" / "results.json").read_text())
    assert result["frames_scored"] == 3 and result["gt_bad"] == 0

    # Library call on the raw copy, and on the compressed one with the same options.
    summaries = {}
    for name, topics in (("raw", raw), ("rs", compressed)):
        summaries[name] = replay_bag(
            tmp_path / name, tmp_path / f"lib_{name}", pipe, ReplayOptions(
                image_topic=topics["image"], camera_info_topic=topics["camera_info"],
                gt_depth_topic=topics["gt_depth"], gt_camera_info_topic=topics["gt_camera_info"],
                sync_tolerance_s=0.005, progress=False))
    s_raw, s_rs = summaries["raw"], summaries["rs"]
    assert s_rs.frames_processed == s_raw.frames_processed == 3 and s_rs.drops == {}
    assert s_rs.frames_scored == s_raw.frames_scored == 3
    for a, b in zip(_gt_depths(tmp_path / "rs", compressed["gt_depth"]),
                    _gt_depths(tmp_path / "raw", raw["gt_depth"])):
        np.testing.assert_array_equal(a, b)  # the same GT to the last float
    for a, b in zip(s_rs.scores, s_raw.scores):
        assert a.metrics == pytest.approx(b.metrics, rel=1e-6, nan_ok=True)
    assert s_rs.aggregate["delta1"] == s_raw.aggregate["delta1"]
    assert result["aggregate"]["delta1"] == pytest.approx(s_rs.aggregate["delta1"], rel=1e-6)
    # Depth of the output bags: the same images give the same depth.
    out_rs = _gt_depths(tmp_path / "lib_rs", "/depth/image")
    out_raw = _gt_depths(tmp_path / "lib_raw", "/depth/image")
    assert len(out_rs) == 3
    for a, b in zip(out_rs, out_raw):
        np.testing.assert_array_equal(a, b)


def test_resampled_gt_matches_gt_recorded_on_the_colour_grid(tmp_path, pipe):
    on_grid = write_robot_bag(tmp_path / "grid", _kinect_frames(1, None), "realsense",
                              depth="png")
    sensor = write_robot_bag(tmp_path / "sensor", _kinect_frames(1, DEPTH_SENSOR), "realsense",
                             depth="png")
    deltas = []
    for name, topics in (("grid", on_grid), ("sensor", sensor)):
        s = replay_bag(tmp_path / name, tmp_path / f"out_{name}", pipe, ReplayOptions(
            image_topic=topics["image"], camera_info_topic=topics["camera_info"],
            gt_depth_topic=topics["gt_depth"], gt_camera_info_topic=topics["gt_camera_info"],
            progress=False))
        assert s.frames_scored == 1
        deltas.append(s.scores[0].metrics)
    # Two nearest-pixel resamplings of one depth map score the prediction alike.
    assert deltas[1]["abs_rel"] == pytest.approx(deltas[0]["abs_rel"], rel=0.05)


def test_corrupt_streams_are_counted_and_the_rest_is_scored(tmp_path, pipe):
    frames = _kinect_frames(6, None)
    topics = write_robot_bag(tmp_path / "clean", frames, "realsense", depth="png")
    ts = make_typestore()
    rgb = frames[0].rgb
    broken = {1: ("rgb8; jpeg compressed bgr8", _bad_payload("truncate", rgb)),
              2: ("rgb8; png compressed bgr8", _bad_payload("corrupt png", rgb)),
              3: ("rgb8; tiff compressed bgr8", _bad_payload("jpeg", rgb))}
    from depthvlm_ros.bags import open_writer
    from depthvlm_ros.bags.typestore import copy_connection

    reader = open_reader(tmp_path / "clean")
    with open_writer(tmp_path / "bad", "mcap") as w:
        conns = {c.topic: copy_connection(w, c, ts) for c in reader.connections}
        counts: dict[str, int] = {}
        for c, t, raw in reader.messages():
            i = counts[c.topic] = counts.get(c.topic, -1) + 1
            msg = ts.deserialize_cdr(raw, c.msgtype)
            if c.topic == topics["image"] and i in broken:
                msg.format, data = broken[i]
                msg.data = np.frombuffer(data, np.uint8)
            if c.topic == topics["gt_depth"] and i == 4:
                msg.data = msg.data[:12]  # a compressedDepth header and no PNG
            w.write(conns[c.topic], t, ts.serialize_cdr(msg, c.msgtype))
    reader.close()
    s = replay_bag(tmp_path / "bad", tmp_path / "out", pipe, ReplayOptions(
        image_topic=topics["image"], camera_info_topic=topics["camera_info"],
        gt_depth_topic=topics["gt_depth"], progress=False))
    assert s.frames_total == 6 and s.frames_processed == 3
    assert s.drops == {"bad_image": 2, "bad_encoding": 1}
    assert s.gt_bad == 1 and s.frames_scored == 2
    assert [sc.index for sc in s.scores] == [0, 5]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_zed_layout_32fc1_compressed_depth(tmp_path, pipe, storage):
    frames = _kinect_frames(2, None)
    topics = write_robot_bag(tmp_path / "zed", frames, "zed", storage, "png", "rvl")
    found = discover_cameras(tmp_path / "zed")
    chosen = found.choose()
    assert (chosen.image_topic, chosen.gt_depth_topic) == (topics["image"], topics["gt_depth"])
    assert "/zed/zed_node/imu/data (sensor_msgs/msg/Imu)" in found.ignored
    s = replay_bag(tmp_path / "zed", tmp_path / "out", pipe, ReplayOptions(
        image_topic=chosen.image_topic, camera_info_topic=chosen.camera_info_topic,
        gt_depth_topic=chosen.gt_depth_topic, gt_camera_info_topic=chosen.gt_camera_info_topic,
        progress=False))
    assert s.frames_processed == s.frames_scored == 2 and s.gt_bad == 0
    gt = _gt_depths(tmp_path / "zed", topics["gt_depth"])[0]
    ok = np.isfinite(frames[0].depth)
    assert np.array_equal(np.isfinite(gt), ok)
    assert np.abs(gt[ok] - frames[0].depth[ok]).max() < 0.01  # 32FC1 inverse-depth quantised


def test_discovery_lists_cameras_and_asks_when_there_are_several(tmp_path, capsys):
    write_robot_bag(tmp_path / "one", _kinect_frames(1, DEPTH_SENSOR), "realsense")
    assert cli_main(["replay", str(tmp_path / "one"), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "/camera/camera/color/image_raw/compressed" in listing
    assert "GT depth /camera/camera/depth/image_rect_raw/compressedDepth" in listing
    assert "ignored: " in listing and "/tf_static" in listing
    # Two cameras in one bag (a realsense and a ZED): nothing is guessed.
    from depthvlm_ros.bags import open_writer
    from depthvlm_ros.bags.typestore import copy_connection

    write_robot_bag(tmp_path / "zed", _kinect_frames(1, None), "zed")
    ts = make_typestore()
    with open_writer(tmp_path / "two", "mcap") as w:
        for name in ("one", "zed"):
            reader = open_reader(tmp_path / name)
            conns = {c.topic: copy_connection(w, c, ts) for c in reader.connections
                     if not (name == "zed" and c.topic == "/tf_static")}
            for c, t, raw in reader.messages():
                if c.topic in conns:
                    w.write(conns[c.topic], t, raw)
            reader.close()
    found = discover_cameras(tmp_path / "two")
    assert len(found.cameras) == 2
    with pytest.raises(InputError, match="2 cameras .* --image-topic"):
        found.choose()
    zed = found.choose("/zed/zed_node/rgb/image_rect_color/compressed")
    assert zed.camera_info_topic == "/zed/zed_node/rgb/camera_info"
    assert zed.gt_depth_topic is None  # named cameras score only a named GT
    assert cli_main(["replay", str(tmp_path / "two"), "--out", str(tmp_path / "o")]) == 1
    assert "2 cameras" in capsys.readouterr().err
