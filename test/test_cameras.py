"""Camera names, their topics, and which camera a question is about."""

from __future__ import annotations

import pytest

from depthvlm_ros.core.cameras import MAX_CAMERAS, camera_topic, choose_camera, parse_camera_names
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.errors import ConfigError, InputError


def test_names_parse_in_order_and_empty_is_one_unnamed_camera():
    assert parse_camera_names("") == ("",) == parse_camera_names("  ")
    assert parse_camera_names("front, left ,arm_2") == ("front", "left", "arm_2")


@pytest.mark.parametrize("text,fragment", [
    ("front,front", "repeated: front"), ("front,", "''"), ("2nd", "'2nd'"),
    ("front/left", "'front/left'"), (",".join(f"c{i}" for i in range(MAX_CAMERAS + 1)),
                                     f"at most {MAX_CAMERAS}")])
def test_bad_names_are_config_errors(text, fragment):
    with pytest.raises(ConfigError, match="invalid cameras") as err:
        parse_camera_names(text)
    assert fragment in str(err.value)
    with pytest.raises(ConfigError, match="invalid cameras"):
        DepthVLMConfig(cameras=text).validate()


def test_topics_stand_under_the_camera_name():
    assert camera_topic("", "depth/image") == "depth/image"
    assert camera_topic("front", "depth/image") == "front/depth/image"


def test_a_question_chooses_its_camera():
    cams, ids = ("front", "left"), {"front": "front_optical", "left": "left_optical"}
    assert choose_camera(cams, "left", "front_optical", ids) == "left"  # the name wins
    assert choose_camera(cams, "", "left_optical", ids) == "left"
    assert choose_camera(cams, "", "", ids) == "front"  # neither: the first camera
    # One camera: the frame_id is not needed (and not checked).
    assert choose_camera(("",), "", "anything", {"": "cam"}) == ""
    with pytest.raises(InputError, match="unknown camera 'rear'; this node serves: front, left"):
        choose_camera(cams, "rear")
    with pytest.raises(InputError, match="no camera has published frame_id 'x'"):
        choose_camera(cams, "", "x", ids)
    with pytest.raises(InputError, match="one unnamed camera"):
        choose_camera(("",), "front")
