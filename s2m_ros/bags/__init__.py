"""rosbag2 bags: storage (read/write MCAP and sqlite3 with rosbags), offline replay of both nodes'
algorithms, and the player. A shell like :mod:`s2m_ros.ros`: it may import every ROS-free room and ``ros``.
"""
