"""Torch-only export tooling: model definitions and ONNX export.

Nothing here is imported by the ROS nodes or by any runtime room (``segmentation``, ``obstacles``, ``inference``, ``ros``);
it needs torch and runs once, offline, to produce the .onnx files the runtime loads.
"""
