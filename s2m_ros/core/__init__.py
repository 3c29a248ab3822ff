"""The ROS-free algorithm of s2m_ros: numpy + OpenCV only, no rclpy, no torch."""
