"""Named QoS profiles: the one place the package's publishers and subscribers take them from.

The node, ``depthvlm play``, the demo, the perf client and the tests all build their endpoints
from these, so a change of history depth or reliability is made here once and every side of a
topic keeps matching.

=====================  ======================================================  ===============
name                   used for                                                profile
=====================  ======================================================  ===============
``SENSOR_DATA``        camera inputs with ``image_qos: sensor_data``           best effort, 5
``RELIABLE_IMAGE``     camera inputs with ``image_qos: reliable``              reliable, 5
``DEPTH_OUT``          ``depth/image``, ``depth/camera_info``                  reliable, 5
``PREVIEW_OUT``        ``points``, ``depth/colorized``                         reliable, 2
``REQUEST_REPLY``      ``query``, ``query_text``, ``answer``                   reliable, 1000
``DIAGNOSTICS``        ``/diagnostics``                                        reliable, 10
``CLOCK``              ``/clock`` from ``depthvlm play --clock``               reliable, 1
``RECORDER``           clients that must see every message a reliable          reliable, 1000
                       publisher sent (demo recorder, perf client, tests)
=====================  ======================================================  ===============
"""

from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

__all__ = ["SENSOR_DATA", "RELIABLE_IMAGE", "DEPTH_OUT", "PREVIEW_OUT", "REQUEST_REPLY",
           "DIAGNOSTICS", "CLOCK", "RECORDER", "image_input", "bag_replay"]


def _reliable(depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE)


SENSOR_DATA = qos_profile_sensor_data
RELIABLE_IMAGE = _reliable(5)
DEPTH_OUT = _reliable(5)
PREVIEW_OUT = _reliable(2)
# The subscription history must hold a burst of queries until the executor takes them, or DDS
# would drop some before the node could answer them busy.
REQUEST_REPLY = _reliable(1000)
DIAGNOSTICS = _reliable(10)
CLOCK = _reliable(1)
RECORDER = _reliable(1000)


def image_input(name: str) -> QoSProfile:
    """The camera-input profile named by the node's ``image_qos`` parameter."""
    return SENSOR_DATA if name == "sensor_data" else RELIABLE_IMAGE


def bag_replay(offered_qos_profiles) -> QoSProfile:
    """The profile ``depthvlm play`` publishes a recorded topic with.

    Reliable, depth 10; latched topics (``/tf_static``, maps) stay latched for late subscribers.
    """
    durability = DurabilityPolicy.VOLATILE
    for q in offered_qos_profiles or ():
        if getattr(getattr(q, "durability", None), "name", "") == "TRANSIENT_LOCAL":
            durability = DurabilityPolicy.TRANSIENT_LOCAL
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
