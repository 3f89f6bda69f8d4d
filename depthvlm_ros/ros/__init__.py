"""ROS 2 glue: the only part of depthvlm_ros that imports rclpy or ROS message types.

Modules are imported explicitly (``from depthvlm_ros.ros import convert``) so that importing this
package costs nothing and works where ROS 2 is not installed.
"""
