"""Rosbag2 bags without ROS: read, write, replay through the pipeline, sample bags, reports.

Needs ``rosbags`` only (no rclpy): :mod:`~depthvlm_ros.bags.typestore` (typestore, reader and
writer), :mod:`~depthvlm_ros.bags.messages` (message <-> array), :mod:`~depthvlm_ros.bags.queries`
(scripted questions), :mod:`~depthvlm_ros.bags.discovery` (which topics form a camera),
:mod:`~depthvlm_ros.bags.replay` (replay), :mod:`~depthvlm_ros.bags.scoring` (GT scoring),
:mod:`~depthvlm_ros.bags.sample` (small RGB-D bags), :mod:`~depthvlm_ros.bags.report` (replay
reports). Publishing a bag on live topics is :mod:`depthvlm_ros.ros.play` (needs rclpy).
"""

from .discovery import BagTopics, CameraTopics, ImageTopic, discover_cameras
from .queries import ScriptedQuery, load_queries
from .replay import OUTPUT_TOPICS, FrameScore, ReplayOptions, ReplaySummary, replay_bag
from .sample import SAMPLE_START_NS, SAMPLE_TOPICS, SampleFrame, write_frames_bag, write_sample_bag
from .typestore import (DEPTHVLM_MSG_TYPES, STORAGE_FORMATS, find_msg_dir, make_typestore,
                        open_reader, open_writer, register_bag_types)

__all__ = [
    "DEPTHVLM_MSG_TYPES", "STORAGE_FORMATS", "OUTPUT_TOPICS", "find_msg_dir", "make_typestore",
    "register_bag_types", "open_reader", "open_writer", "ScriptedQuery", "load_queries",
    "ReplayOptions", "FrameScore", "ReplaySummary", "replay_bag", "SAMPLE_TOPICS",
    "SAMPLE_START_NS", "SampleFrame", "write_frames_bag", "write_sample_bag", "BagTopics",
    "CameraTopics", "ImageTopic", "discover_cameras",
]
