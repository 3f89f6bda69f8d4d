"""depthvlm replay / make-sample-bag: output bags, pairing, answers, scoring and schemas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from depthvlm_ros.cli import main as cli_main
from depthvlm_ros.core.bench import metrics
from depthvlm_ros.core.camera import Intrinsics, backproject
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.spatial import points_for_pixels
from depthvlm_ros.bags import messages as bagconv
from depthvlm_ros.bags import (SAMPLE_START_NS, SAMPLE_TOPICS, SampleFrame, load_queries,
                                     make_typestore, open_writer, write_frames_bag)

rosbags = pytest.importorskip("rosbags")
from rosbags.rosbag2 import Reader  # noqa: E402

W, H = 64, 48
# fx near the canonical focal keeps the model image at the 4-token minimum: fast tests.
INTR = Intrinsics(1000.0, 1000.0, 31.5, 23.5, W, H)
PERIOD = 100_000_000
IMG, INFO, GT = SAMPLE_TOPICS["image"], SAMPLE_TOPICS["camera_info"], SAMPLE_TOPICS["gt_depth"]


def _frames(n: int, seed: int = 0) -> list[SampleFrame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        gt = rng.uniform(0.5, 8.0, (H, W)).astype(np.float32)
        gt[:4] = 0.0  # invalid GT rows must not be scored
        out.append(SampleFrame(rgb, INTR, gt, SAMPLE_START_NS + i * PERIOD))
    return out


def _read(bag: Path) -> dict[str, list]:
    """topic -> [(log_ns, msg)] with a typestore that knows the depthvlm messages."""
    ts = make_typestore()
    out: dict[str, list] = {}
    with Reader(bag) as r:
        for conn, t, raw in r.messages():
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
            except Exception:  # the bad-message test copies garbage through on purpose
                msg = bytes(raw)
            out.setdefault(conn.topic, []).append((t, msg))
    return out


@pytest.fixture()
def pipe(tiny_model_dir):
    return DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(tiny_model_dir),
                                                       device="cpu", head_backend="torch"))


def _replay(args: list[str], model_dir) -> int:
    # The torch head, as the reference pipeline below uses: bitwise comparable.
    return cli_main(["replay", *args, "--model", str(model_dir), "--device", "cpu",
                     "--head-backend", "torch", "--no-progress"])


def test_replay_writes_depth_points_answers_and_report(tmp_path, tiny_model_dir, pipe):
    frames = _frames(5)
    write_frames_bag(tmp_path / "in", frames, "mcap")
    absolute = (frames[3].stamp_ns + 50_000_000) / 1e9
    (tmp_path / "q.yaml").write_text(
        "- {time: 0.15, question: 'How far is the wall?', pixels: [[10, 20], [63.4, 47], "
        "[200, 5]], id: near}\n"
        f"- {{stamp: {absolute!r}, question: 'What is closest?', id: abs}}\n"
        "- {time: 10.0, question: 'Anything late?'}\n")
    out = tmp_path / "out"
    rc = _replay([str(tmp_path / "in"), "--image-topic", IMG,
                  "--camera-info-topic", INFO, "--gt-depth-topic", GT,
                  "--queries", str(tmp_path / "q.yaml"), "--points", "--out", str(out)],
                 tiny_model_dir)
    assert rc == 0
    msgs = _read(out / "bag")
    # Input topics are carried over unchanged.
    assert [t for t, _ in msgs[IMG]] == [f.stamp_ns for f in frames]
    assert len(msgs[INFO]) == len(msgs[GT]) == 5
    depth_msgs, info_msgs, cloud_msgs = msgs["/depth/image"], msgs["/depth/camera_info"], msgs["/points"]
    assert len(depth_msgs) == len(info_msgs) == len(cloud_msgs) == 5
    for f, (t, d), (ti, ci), (tp, pc) in zip(frames, depth_msgs, info_msgs, cloud_msgs):
        assert t == ti == tp == f.stamp_ns                      # log time = the image's
        for m in (d, ci, pc):
            assert bagconv.stamp_ns(m.header.stamp) == f.stamp_ns
            assert m.header.frame_id == "camera_optical_frame"
        assert d.encoding == "32FC1" and (d.width, d.height) == (W, H)
        depth = bagconv.image_array(d)
        # Deterministic and identical to running the pipeline directly on the frame.
        np.testing.assert_array_equal(depth, pipe.process_frame(f.rgb, INTR, False).depth)
        assert np.allclose(ci.k, INTR.matrix().reshape(-1)) and (ci.width, ci.height) == (W, H)
        assert (pc.height, pc.width, pc.is_dense) == (H, W, False)
        assert [fl.name for fl in pc.fields] == ["x", "y", "z", "rgb"] and pc.point_step == 16
        cloud = np.frombuffer(pc.data.tobytes(), "<f4").reshape(H, W, 4)
        np.testing.assert_array_equal(cloud[..., :3], backproject(depth, INTR))
        packed = cloud[..., 3].view("<u4")
        assert np.array_equal((packed >> 16) & 255, f.rgb[..., 0])
        assert np.array_equal(packed & 255, f.rgb[..., 2])

    answers = msgs["/answer"]
    assert [a.id for _, a in answers] == ["near", "abs", "q2"]
    expect_frame = {"near": 1, "abs": 3, "q2": 4}
    expect_log = {"near": SAMPLE_START_NS + 150_000_000, "abs": frames[3].stamp_ns,
                  "q2": SAMPLE_START_NS + 10 * 10**9}
    out_depth = {bagconv.stamp_ns(d.header.stamp): bagconv.image_array(d) for _, d in depth_msgs}
    for t, a in answers:
        f = frames[expect_frame[a.id]]
        assert bagconv.stamp_ns(a.header.stamp) == f.stamp_ns and t == expect_log[a.id]
        assert a.status == 0 and a.status_reason == ""
        ctx = pipe.process_frame(f.rgb, INTR).context
        # The model's own text is kept; the final text is measured where there are pixels.
        assert a.model_answer == pipe.answer(ctx, a.question).text
        if a.id == "near":
            assert a.source == 1 and "2.33 m" in a.answer and "outside the image" in a.answer
        elif a.id == "abs":  # names something to find: the tiny model cannot point at it
            assert a.source == 1 and "could not locate" in a.answer and not a.pixels
        else:
            assert a.source == 2 and a.answer == a.model_answer
    near = answers[0][1]
    assert [(p.x, p.y) for p in near.pixels] == [(10, 20), (63.4, 47), (200, 5)]
    assert len(near.depths) == len(near.points) == 3
    d_ref, p_ref = points_for_pixels(out_depth[frames[1].stamp_ns], INTR,
                                     [[10, 20], [63.4, 47], [200, 5]])
    np.testing.assert_allclose(near.depths[:2], d_ref[:2], rtol=1e-6)
    np.testing.assert_allclose([near.points[0].x, near.points[0].y, near.points[0].z], p_ref[0],
                               rtol=1e-5)
    assert math.isnan(near.depths[2]) and math.isnan(near.points[2].z)  # outside the image
    # The output stays in log-time order, answers included.
    with Reader(out / "bag") as r:
        times = [t for _, t, _ in r.messages()]
    assert times == sorted(times)

    results = json.loads((out / "results.json").read_text())
    assert results["frames_processed"] == results["frames_scored"] == 5
    assert results["frames_unpaired"] == results["frames_bad"] == 0
    assert results["answers"] == 3 and results["answer_errors"] == 0
    ref = []
    for f in frames:
        p, g = metrics.dense_pair(out_depth[f.stamp_ns],
                                  metrics.apply_depth_range(f.depth, 1e-3, math.inf), None)
        ref.append(metrics.image_metrics(p, g))
    assert [s["metrics"]["delta1"] for s in results["scores"]] == [m.delta1 for m in ref]
    assert results["scores"][0]["metrics"]["n_valid"] <= (H - 4) * W
    assert results["aggregate"]["abs_rel"] == pytest.approx(metrics.aggregate(ref).abs_rel)
    for name in ("report.md", "report.html", "plots/delta1_over_time.png",
                 "plots/abs_rel_over_time.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "plots").glob("frame_*_panel.png"))) == 4
    assert len(list((out / "plots").glob("frame_*_pred_color.png"))) == 4
    assert "δ1" in (out / "report.md").read_text()


def test_output_mcap_schemas_with_independent_reader(tmp_path, tiny_model_dir):
    from mcap.reader import make_reader

    write_frames_bag(tmp_path / "in", _frames(2), "mcap")
    (tmp_path / "q.yaml").write_text("- {time: 0, question: 'How far?', pixels: [[1, 2]]}\n")
    assert _replay([str(tmp_path / "in"), "--image-topic", IMG, "--camera-info-topic", INFO,
                    "--queries", str(tmp_path / "q.yaml"), "--points",
                    "--out", str(tmp_path / "out")], tiny_model_dir) == 0
    files = list((tmp_path / "out" / "bag").glob("*.mcap"))
    assert len(files) == 1
    with open(files[0], "rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        chans = {c.topic: c for c in summary.channels.values()}
        counts = summary.statistics.channel_message_counts
        expected = {IMG: "sensor_msgs/msg/Image", INFO: "sensor_msgs/msg/CameraInfo",
                    GT: "sensor_msgs/msg/Image", "/depth/image": "sensor_msgs/msg/Image",
                    "/depth/camera_info": "sensor_msgs/msg/CameraInfo",
                    "/points": "sensor_msgs/msg/PointCloud2",
                    "/answer": "depthvlm_ros/msg/SpatialAnswer"}
        assert set(chans) == set(expected)
        for topic, typ in expected.items():
            ch = chans[topic]
            schema = summary.schemas[ch.schema_id]
            assert ch.message_encoding == "cdr"
            assert schema.name == typ and schema.encoding == "ros2msg"
            text = schema.data.decode()
            assert "MSG: std_msgs/Header" in text and "MSG: builtin_interfaces/Time" in text
            assert counts[ch.id] == (1 if topic == "/answer" else 2)
        ans = summary.schemas[chans["/answer"].schema_id].data.decode()
        assert "uint8 STATUS_ERROR=2" in ans and "geometry_msgs/Point[] points" in ans
        assert "MSG: geometry_msgs/Point" in ans
        assert "MSG: sensor_msgs/PointField" in summary.schemas[chans["/points"].schema_id].data.decode()
        # Every message is readable through the independent reader and carries data.
        n = sum(1 for _ in reader.iter_messages())
    assert n == sum(counts.values()) == 13


def test_unpaired_camera_info_and_bad_messages(tmp_path, tiny_model_dir):
    ts = make_typestore()
    frames = _frames(6, seed=3)
    # 0 ok, 1 no camera_info, 2 camera_info with another stamp, 3 bad K, 4 corrupt image bytes,
    # 5 unsupported encoding; GT in 16UC1 mm; one GT message is garbage.
    with open_writer(tmp_path / "in", "sqlite3") as w:
        ci = w.add_connection(INFO, "sensor_msgs/msg/CameraInfo", typestore=ts)
        im = w.add_connection(IMG, "sensor_msgs/msg/Image", typestore=ts)
        gt = w.add_connection(GT, "sensor_msgs/msg/Image", typestore=ts)
        for i, f in enumerate(frames):
            hdr = bagconv.make_header(ts, f.stamp_ns, "cam")
            if i == 4:
                w.write(im, f.stamp_ns, b"\x00\x01")
            else:
                enc_img = bagconv.make_image(ts, hdr, f.rgb, "rgb8")
                if i == 5:
                    enc_img.encoding = "yuv422"
                w.write(im, f.stamp_ns, ts.serialize_cdr(enc_img, "sensor_msgs/msg/Image"))
            if i != 1:
                info_hdr = bagconv.make_header(ts, f.stamp_ns + (7_000_000 if i == 2 else 0), "cam")
                info = bagconv.make_camera_info(ts, info_hdr, INTR)
                if i == 3:
                    info.k = np.zeros(9)
                w.write(ci, f.stamp_ns + 1, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            mm = np.round(np.nan_to_num(f.depth) * 1000).astype(np.uint16)
            data = ts.serialize_cdr(bagconv.make_image(ts, hdr, mm, "16UC1"),
                                    "sensor_msgs/msg/Image")
            w.write(gt, f.stamp_ns + 2, data if i != 0 else data[:20])
    (tmp_path / "q.yaml").write_text(
        "- {stamp: 1000000000.0, question: 'Too early?', id: early}\n"
        "- {time: 0.15, question: 'About frame one?', id: one}\n")

    args = [str(tmp_path / "in"), "--image-topic", IMG, "--camera-info-topic", INFO,
            "--gt-depth-topic", GT, "--queries", str(tmp_path / "q.yaml")]
    assert _replay(args + ["--out", str(tmp_path / "a")], tiny_model_dir) == 0
    r = json.loads((tmp_path / "a" / "results.json").read_text())
    assert r["frames_total"] == 6 and r["frames_processed"] == 1
    assert r["frames_unpaired"] == 3 and r["frames_bad"] == 2 and r["camera_info_bad"] == 1
    assert r["gt_bad"] == 1 and r["frames_scored"] == 0  # frame 0's GT is the garbage one
    assert any("no camera_info" in w for w in r["warnings"])
    msgs = _read(tmp_path / "a" / "bag")
    assert [bagconv.stamp_ns(d.header.stamp) for _, d in msgs["/depth/image"]] == [frames[0].stamp_ns]
    ans = {a.id: a for _, a in msgs["/answer"]}
    assert ans["early"].status == 2 and "no frame" in ans["early"].status_reason
    # Frame 1 has no camera_info, so the question is about frame 0, the last usable one.
    assert ans["one"].status == 0 and bagconv.stamp_ns(ans["one"].header.stamp) == frames[0].stamp_ns

    # Tolerance pairs frame 2; the fallback FOV covers frames 1 and 3 (bad K is not used).
    assert _replay(args + ["--out", str(tmp_path / "b"), "--fallback-hfov", "60",
                           "--sync-tolerance", "0.01"], tiny_model_dir) == 0
    r = json.loads((tmp_path / "b" / "results.json").read_text())
    assert r["frames_processed"] == 4 and r["frames_fallback"] == 2 and r["frames_unpaired"] == 0
    assert r["frames_scored"] == 3 and r["gt_bad"] == 1
    msgs = _read(tmp_path / "b" / "bag")
    infos = {bagconv.stamp_ns(c.header.stamp): c for _, c in msgs["/depth/camera_info"]}
    fov = Intrinsics.from_fov(W, H, 60.0)
    assert infos[frames[1].stamp_ns].k[0] == pytest.approx(fov.fx)
    assert infos[frames[2].stamp_ns].k[0] == pytest.approx(INTR.fx)
    ans = {a.id: a for _, a in msgs["/answer"]}
    assert bagconv.stamp_ns(ans["one"].header.stamp) == frames[1].stamp_ns

    # A bag without the camera_info topic at all is reported, not a crash (exit 1: no frame).
    assert _replay([str(tmp_path / "in"), "--image-topic", IMG, "--camera-info-topic", "/nope",
                    "--out", str(tmp_path / "c")], tiny_model_dir) == 1
    r = json.loads((tmp_path / "c" / "results.json").read_text())
    assert r["frames_unpaired"] == 4 and any("/nope" in w for w in r["warnings"])
    # A missing image topic is a clear error.
    assert _replay([str(tmp_path / "in"), "--image-topic", "/x", "--camera-info-topic", INFO,
                    "--out", str(tmp_path / "d")], tiny_model_dir) == 1


def test_sqlite3_output(tmp_path, tiny_model_dir):
    write_frames_bag(tmp_path / "in", _frames(2), "sqlite3", gt_encoding="16UC1")
    assert _replay([str(tmp_path / "in"), "--image-topic", IMG, "--camera-info-topic", INFO,
                    "--gt-depth-topic", GT, "--format", "sqlite3", "--out", str(tmp_path / "o")],
                   tiny_model_dir) == 0
    bag = tmp_path / "o" / "bag"
    assert list(bag.glob("*.db3")) and not list(bag.glob("*.mcap"))
    msgs = _read(bag)
    assert len(msgs["/depth/image"]) == len(msgs["/depth/camera_info"]) == 2
    assert "/points" not in msgs and "/answer" not in msgs
    assert json.loads((tmp_path / "o" / "results.json").read_text())["frames_scored"] == 2


def test_load_queries_validation(tmp_path):
    p = tmp_path / "q.yaml"
    p.write_text("queries:\n  - {time: 1.5, question: a, pixels: [[1, 2]]}\n"
                 "  - {time: 1700000000.5, question: b, id: x}\n")
    q = load_queries(p)
    assert (q[0].time_s, q[0].absolute, q[0].pixels, q[0].id) == (1.5, False, ((1.0, 2.0),), "q0")
    assert q[1].absolute and q[1].id == "x"
    for bad in ("- {question: no time}", "- {time: 1, stamp: 2, question: both}",
                "- {time: 1, question: ''}", "- {time: -1, question: neg}",
                "- {time: 1, question: p, pixels: [[1]]}", "- {time: 1, question: k, foo: 1}",
                "- [1, 2]", "{a: [unclosed"):
        p.write_text(bad)
        with pytest.raises(InputError):
            load_queries(p)


def test_bagconv_encodings_roundtrip():
    ts = make_typestore()
    hdr = bagconv.make_header(ts, 5, "f")
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    bgr = bagconv.make_image(ts, hdr, np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    back = ts.deserialize_cdr(ts.serialize_cdr(bgr, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(bagconv.image_rgb(back), rgb)
    # Row padding (step > width * channels) and big-endian 16-bit depth.
    mm = np.array([[0, 1000, 65535], [250, 0, 1]], dtype=np.uint16)
    padded = np.zeros((2, 8), np.uint8)
    padded[:, :6] = mm.astype(">u2").view(np.uint8).reshape(2, 6)
    msg = ts.types["sensor_msgs/msg/Image"](header=hdr, height=2, width=3, encoding="16UC1",
                                            is_bigendian=1, step=8, data=padded.reshape(-1))
    d = bagconv.image_depth_m(msg)
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 1])
    np.testing.assert_allclose(d[0, 1:], [1.0, 65.535], rtol=1e-6)
    with pytest.raises(InputError):
        bagconv.image_rgb(msg)
    msg.data = msg.data[:10]
    with pytest.raises(InputError):
        bagconv.image_array(msg)
    f = bagconv.make_depth_image(ts, hdr, np.array([[np.inf, -1.0, 2.5]], np.float32))
    assert np.isnan(bagconv.image_depth_m(f)[0, :2]).all()
    assert bagconv.cdr_header_stamp(ts.serialize_cdr(f, "sensor_msgs/msg/Image")) == 5


def test_make_sample_bag(tmp_path):
    pytest.importorskip("depthvlm_ros.core.bench.synthetic")
    out = tmp_path / "sample"
    assert cli_main(["make-sample-bag", str(out), "--frames", "3", "--width", "64",
                     "--height", "48", "--format", "sqlite3"]) == 0
    msgs = _read(out)
    assert len(msgs[IMG]) == len(msgs[INFO]) == len(msgs[GT]) == 3
    stamps = [bagconv.stamp_ns(m.header.stamp) for _, m in msgs[IMG]]
    assert np.all(np.diff(stamps) == 100_000_000) and [t for t, _ in msgs[IMG]] == stamps
    for (_, im), (_, ci), (_, gt) in zip(msgs[IMG], msgs[INFO], msgs[GT]):
        assert im.encoding == "rgb8" and gt.encoding == "32FC1"
        assert im.header.frame_id == ci.header.frame_id == gt.header.frame_id == "camera_optical_frame"
        assert (im.width, im.height, ci.width, ci.height) == (64, 48, 64, 48)
        assert ci.k[0] > 0 and np.isfinite(bagconv.image_depth_m(gt)).any()
    # Indoor and outdoor scenes alternate, so their depth ranges differ.
    far = [np.nanmax(bagconv.image_depth_m(gt)) for _, gt in msgs[GT]]
    assert far[0] != far[1]
    # By default the frames are of the world the embedded model was trained in.
    from depthvlm_ros.core.bench.synthetic import EMBEDDED_WORLD, render_scene
    first = render_scene(0, "indoor", width=64, height=48, world=EMBEDDED_WORLD)
    np.testing.assert_allclose(np.nan_to_num(bagconv.image_depth_m(msgs[GT][0][1])), first.depth)
    # --world picks the generator's world: other scenes from the same seeds.
    other = tmp_path / "sample_v2"
    assert cli_main(["make-sample-bag", str(other), "--frames", "1", "--width", "64",
                     "--height", "48", "--format", "sqlite3", "--world", "v2"]) == 0
    gt_v2 = np.nan_to_num(bagconv.image_depth_m(_read(other)[GT][0][1]))
    assert not np.array_equal(gt_v2, np.nan_to_num(bagconv.image_depth_m(msgs[GT][0][1])))
    assert cli_main(["make-sample-bag", str(tmp_path / "bad"), "--frames", "1",
                     "--world", "v9"]) == 1
