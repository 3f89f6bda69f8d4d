"""``depthvlm play``: publish a bag's messages on live ROS topics with their recorded timing."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..bags.typestore import open_reader
from ..core.errors import InputError

__all__ = ["ACK_TIMEOUT_S", "PlayStats", "play_bag", "message_class"]

#: How long ``play`` waits, after its last message, for reliable readers to acknowledge.
ACK_TIMEOUT_S = 2.0


@dataclass
class PlayStats:
    """What :func:`play_bag` published.

    Attributes:
        messages: messages published (all loops).
        per_topic: messages published per topic.
        loops: complete passes over the bag.
        clock_messages: ``/clock`` messages published.
        skipped_topics: topic -> reason, for topics that could not be published.
        wall_s: seconds from the first message to the end.
    """

    messages: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    loops: int = 0
    clock_messages: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def message_class(msgtype: str):
    """The rclpy message class for a rosbags type name such as ``sensor_msgs/msg/Image``."""
    try:
        from rosidl_runtime_py.utilities import get_message  # present in full ROS installs

        return get_message(msgtype)
    except ImportError:
        pass
    import importlib

    pkg, sub, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)


def play_bag(bag: str | Path, rate: float = 1.0, clock: bool = False, loop: bool = False,
             topics: Sequence[str] | None = None, delay_s: float = 0.0,
             wait_for_subscribers_s: float = 0.0, clock_hz: float = 40.0,
             node_name: str = "depthvlm_play", stop=None, log=print) -> PlayStats:
    """Publish a bag's messages on live ROS topics with their recorded timing.

    Messages are published as their recorded CDR bytes (what ``ros2 bag play`` does), on
    publishers of the rclpy type named by the bag; the first message of each topic is also
    deserialised with ``rclpy.serialization`` to check that the installed type matches the
    recorded definition, and topics that fail are skipped with a reason. The i-th message goes
    out ``(log_time_i - log_time_0) / rate`` seconds after the start. With ``clock``,
    ``/clock`` (rosgraph_msgs/Clock) carries the bag time at ``clock_hz`` and before every
    message, so nodes with ``use_sim_time`` follow the bag.

    Args:
        bag: rosbag2 folder (or its storage file).
        rate: playback speed factor (> 0).
        clock: publish ``/clock``.
        loop: start over at the end until ``stop`` is set (or interrupted).
        topics: only these topics (default all).
        delay_s: wait this long after creating the publishers, so subscribers can match.
        wait_for_subscribers_s: then wait up to this long until every publisher has matched
            at least one subscriber (discovery takes a variable time, so a fixed delay alone
            can drop the first messages).
        clock_hz: ``/clock`` rate while waiting between messages.
        node_name: name of the publishing node.
        stop: optional ``threading.Event`` that ends playback.
        log: where progress lines go (None: silent).

    Returns:
        :class:`PlayStats`.

    Raises:
        InputError: bad arguments, unreadable bag, or a requested topic not in the bag.
    """
    import rclpy
    from rclpy.duration import Duration
    from rclpy.serialization import deserialize_message
    from . import qos

    if not rate > 0 or not math.isfinite(rate):
        raise InputError(f"rate must be positive, got {rate}")
    if clock_hz <= 0:
        raise InputError(f"clock rate must be positive, got {clock_hz}")
    reader = open_reader(bag)
    stats = PlayStats()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        available = {c.topic for c in reader.connections}
        if topics:
            missing = sorted(set(topics) - available)
            if missing:
                raise InputError(f"topic(s) {', '.join(missing)} not in {bag} "
                                 f"(topics: {', '.join(sorted(available))})")
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        node = rclpy.create_node(node_name, context=context)
        pubs: dict[int, Any] = {}
        types: dict[int, Any] = {}
        by_topic: dict[tuple[str, str], Any] = {}
        for c in conns:
            key = (c.topic, c.msgtype)
            try:
                if key not in by_topic:
                    cls = message_class(c.msgtype)
                    by_topic[key] = (node.create_publisher(cls, c.topic, qos.bag_replay(getattr(c.ext, "offered_qos_profiles", None))), cls)
                pubs[c.id], types[c.id] = by_topic[key]
            except Exception as exc:  # noqa: BLE001 - a missing type skips only its topic
                stats.skipped_topics[c.topic] = f"type {c.msgtype} not available: {exc}"
        clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", qos.CLOCK)
        for t, why in stats.skipped_topics.items():
            if log:
                log(f"play: skipping {t}: {why}")
        live = [c for c in conns if c.id in pubs]
        if not live:
            raise InputError(f"nothing to publish from {bag}")
        stopped = (lambda: stop.is_set()) if stop is not None else (lambda: False)
        if delay_s > 0:
            time.sleep(delay_s)
        if wait_for_subscribers_s > 0:
            until = time.monotonic() + wait_for_subscribers_s
            waiting = list(by_topic.values())
            while time.monotonic() < until:
                waiting = [(p, c) for p, c in waiting if p.get_subscription_count() == 0]
                if not waiting:
                    break
                time.sleep(0.02)
            if waiting and log:
                log("play: no subscriber on " + ", ".join(p.topic_name for p, _ in waiting))
        checked: set[int] = set()
        period = 1.0 / clock_hz
        t_first = time.monotonic()

        def publish_clock(bag_ns: int) -> None:
            sec, nsec = divmod(int(bag_ns), 1_000_000_000)
            m = Clock()
            m.clock.sec, m.clock.nanosec = sec, nsec
            clock_pub.publish(m)
            stats.clock_messages += 1

        while True:
            start_ns = None
            wall0 = time.monotonic()
            next_clock = wall0
            for conn, log_ns, raw in reader.messages(connections=live):
                if stopped():
                    break
                if start_ns is None:
                    start_ns = log_ns
                due = wall0 + (log_ns - start_ns) / 1e9 / rate
                # Sleep in slices so /clock keeps ticking and a stop request is seen quickly.
                while True:
                    now = time.monotonic()
                    if clock_pub is not None and now >= next_clock:
                        # Clamped to the next message's time, so /clock never runs ahead of
                        # the data and never goes backwards when that message is published.
                        publish_clock(min(start_ns + int((now - wall0) * rate * 1e9), log_ns))
                        next_clock = now + period
                    if now >= due or stopped():
                        break
                    time.sleep(min(due - now, period, 0.05))
                if conn.id not in checked:
                    try:
                        deserialize_message(bytes(raw), types[conn.id])
                    except Exception as exc:  # noqa: BLE001 - definition mismatch: skip topic
                        stats.skipped_topics[conn.topic] = f"recorded data does not match " \
                                                           f"the installed type: {exc}"
                        live = [c for c in live if c.id != conn.id]
                        pubs.pop(conn.id)
                        continue
                    checked.add(conn.id)
                if conn.id not in pubs:
                    continue
                if clock_pub is not None:
                    publish_clock(log_ns)
                pubs[conn.id].publish(bytes(raw))
                stats.messages += 1
                stats.per_topic[conn.topic] = stats.per_topic.get(conn.topic, 0) + 1
            else:
                stats.loops += 1
                if loop and live and not stopped():
                    continue
            break
        stats.wall_s = time.monotonic() - t_first
        # A reliable writer destroyed right after its last publish cannot resend what a busy
        # reader missed: give the readers a moment to acknowledge everything first.
        for pub in {id(p): p for p in [*pubs.values(), clock_pub] if p is not None}.values():
            pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
    finally:
        reader.close()
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
    return stats
