"""The rosbags typestore and rosbag2 files: open bags, write new ones, copy connections.

Everything in :mod:`depthvlm_ros.bags` uses ``rosbags`` (its own typestore and CDR serializer), so
reading, writing and replaying bags needs neither rclpy nor a ROS installation. The custom
``depthvlm_ros`` messages are registered in the typestore from the ``msg/*.msg`` text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..core.errors import InputError

__all__ = ["DEPTHVLM_MSG_TYPES", "STORAGE_FORMATS", "find_msg_dir", "make_typestore",
           "register_bag_types", "open_reader", "open_writer", "copy_connection"]

#: Custom interfaces of this package, registered in every typestore made here.
DEPTHVLM_MSG_TYPES = ("RegionMeasurement", "SpatialQuery", "SpatialAnswer")

#: Bag storage formats accepted by the writer.
STORAGE_FORMATS = ("mcap", "sqlite3")


def find_msg_dir() -> Path:
    """Folder holding ``SpatialQuery.msg`` and ``SpatialAnswer.msg``.

    Looked up in ``$DEPTHVLM_MSG_DIR``, the source tree (``<repo>/msg``) and the ``share``
    folders of ``$AMENT_PREFIX_PATH`` (a colcon install), in that order.

    Raises:
        InputError: none of them has the files.
    """
    candidates = []
    if os.environ.get("DEPTHVLM_MSG_DIR"):
        candidates.append(Path(os.environ["DEPTHVLM_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "depthvlm_ros" / "msg")
    for c in candidates:
        if all((c / f"{n}.msg").is_file() for n in DEPTHVLM_MSG_TYPES):
            return c
    raise InputError("cannot find the depthvlm_ros msg/*.msg files (looked in "
                     + ", ".join(str(c) for c in candidates) + "); set DEPTHVLM_MSG_DIR")


def make_typestore():
    """A rosbags typestore (ROS 2 Kilted types) with the depthvlm_ros messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = getattr(Stores, "ROS2_KILTED", Stores.LATEST)
    ts = get_typestore(store)
    msg_dir = find_msg_dir()
    types: dict = {}
    for name in DEPTHVLM_MSG_TYPES:
        text = (msg_dir / f"{name}.msg").read_text()
        types.update(get_types_from_msg(text, f"depthvlm_ros/msg/{name}"))
    ts.register(types)
    return ts


def register_bag_types(ts, connections: Iterable) -> list[str]:
    """Register message types that a bag defines but the typestore lacks.

    rosbag2 stores each connection's full definition (``ros2msg`` or ``ros2idl``), so bags
    with custom messages can be read without their packages.

    Returns:
        Types that could not be registered (their messages can still be copied, not decoded).
    """
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    failed = []
    for conn in connections:
        if conn.msgtype in ts.types:
            continue
        data = getattr(conn.msgdef, "data", "") if conn.msgdef else ""
        try:
            if not data:
                raise ValueError("no definition stored")
            if data.startswith("=" * 80 + "\nIDL: "):
                ts.register(get_types_from_idl(data))
            else:
                ts.register(get_types_from_msg(data, conn.msgtype))
        except Exception:  # noqa: BLE001 - any parse problem only means "cannot decode"
            failed.append(conn.msgtype)
    return failed


def open_reader(bag: str | Path):
    """An opened rosbags reader for a bag folder, or the ``.mcap``/``.db3`` file inside one.

    Raises:
        InputError: the bag cannot be opened.
    """
    from rosbags.rosbag2 import Reader

    bag = Path(bag)
    if bag.is_file():  # accept the storage file itself, as ros2 bag does
        bag = bag.parent
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for bad bags
        raise InputError(f"cannot open bag {bag}: {exc}") from None
    return reader


def open_writer(path: str | Path, storage: str = "mcap"):
    """A rosbags rosbag2 writer (format version 9) for a new bag folder.

    Raises:
        InputError: unknown storage, or the path exists (rosbag2 writers never overwrite).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGE_FORMATS:
        raise InputError(f"storage must be one of {', '.join(STORAGE_FORMATS)}, got {storage!r}")
    path = Path(path)
    if path.exists():
        raise InputError(f"{path} exists already; bags are never overwritten")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=9, storage_plugin=plugin)


def copy_connection(writer, conn, ts):
    """Output connection equal to an input one (definition, hash, QoS)."""
    data = getattr(conn.msgdef, "data", "") if conn.msgdef else ""
    ext = conn.ext
    kwargs = {"serialization_format": getattr(ext, "serialization_format", "cdr"),
              "offered_qos_profiles": getattr(ext, "offered_qos_profiles", None) or ()}
    if data and conn.digest:
        return writer.add_connection(conn.topic, conn.msgtype, msgdef=data, rihs01=conn.digest,
                                     **kwargs)
    # Old bags (format < 8) store no definition: generate it from the typestore.
    return writer.add_connection(conn.topic, conn.msgtype, typestore=ts, **kwargs)
