"""Speed measurement for ``s2m bench``: timing helpers and the LiDAR fusion workload (ROS-free)."""
