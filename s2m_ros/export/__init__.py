"""Torch-only export tooling: model definitions and ONNX export.

Nothing here is imported by the ROS nodes or by ``s2m_ros.core`` / ``s2m_ros.inference``;
it needs torch and runs once, offline, to produce the .onnx files the runtime loads.
"""
