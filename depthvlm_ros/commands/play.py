"""``depthvlm play``: publish a rosbag's messages on live ROS 2 topics (rclpy, no ros2cli)."""

from __future__ import annotations

import argparse

from . import add_bag_argument

__all__ = ["HELP", "add_arguments", "run"]

HELP = ("Play a rosbag2 bag (mcap or sqlite3) to live ROS 2 topics with its timing, optionally "
        "with /clock; a stand-in for 'ros2 bag play' where rosbag2 is not installed.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_bag_argument(p)
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    p.add_argument("--clock", action="store_true", help="publish /clock with the bag time")
    p.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate (default 40 Hz)")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="only these topics")
    p.add_argument("--delay", type=float, default=0.0, metavar="S",
                   help="wait S seconds after creating publishers (lets subscribers match)")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="then wait up to S seconds until every topic has a subscriber")


def run(args: argparse.Namespace) -> int:
    from ..ros.play import play_bag

    stats = play_bag(args.bag, rate=args.rate, clock=args.clock, loop=args.loop,
                     topics=args.topics, delay_s=args.delay,
                     wait_for_subscribers_s=args.wait_for_subscribers, clock_hz=args.clock_hz)
    per = ", ".join(f"{t}: {n}" for t, n in sorted(stats.per_topic.items()))
    print(f"published {stats.messages} messages in {stats.wall_s:.2f} s "
          f"({stats.loops} full pass(es)){': ' + per if per else ''}"
          + (f"; /clock: {stats.clock_messages}" if args.clock else ""))
    return 0
