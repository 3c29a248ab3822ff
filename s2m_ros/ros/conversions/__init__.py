"""Conversions between ROS 2 messages and numpy arrays / core dataclasses.

Everything here raises :class:`ConversionError` (a ``ValueError``) for input it
cannot convert; the exception names the offending field and its value.
"""
from s2m_ros.ros.conversions.errors import ConversionError

__all__ = ["ConversionError"]
