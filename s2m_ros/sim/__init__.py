"""One synthetic apron world (ROS-free): convex solids ray-cast for both the camera image and the LiDAR
sweep, with exact ground truth; a drive (:mod:`~s2m_ros.sim.scenario`) or a still view
(:mod:`~s2m_ros.sim.still`). May import: ``s2m_ros.types``, ``s2m_ros.config``, ``s2m_ros.obstacles``.
"""
