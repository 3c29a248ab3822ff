"""The camera side of S2M, ROS-free (numpy + OpenCV): anomaly scorers (weight-free surface model, model
scorers on an :mod:`s2m_ros.inference` session), threshold-free prompts, promptable segmenters (GrabCut,
MobileSAM), mask selection, objectness refinement, and :class:`~s2m_ros.segmentation.pipeline.S2MPipeline`
that wires them. May import: ``s2m_ros.types``, ``s2m_ros.config``, ``s2m_ros.inference``.
"""
