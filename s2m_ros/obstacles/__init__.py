"""The 3D side, ROS-free (numpy + scipy): camera model, rigid transforms, masks + LiDAR -> 3D obstacles
(fusion), temporal consistency (tracking), poses and time matching, and
:class:`~s2m_ros.obstacles.pipeline.ObstaclePipeline` that wires them.
May import: ``s2m_ros.types``, ``s2m_ros.config``.
"""
