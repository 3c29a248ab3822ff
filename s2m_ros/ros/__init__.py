"""ROS 2 shells: the two nodes, their parameters and diagnostics, the latest-only worker, the output
messages and the message conversions. No algorithm lives here; everything below is ROS-free.
"""
