"""geometry_msgs Transform / Pose -> 4x4 matrices (rclpy or rosbags messages: only fields are read)."""
from s2m_ros.obstacles.geometry import transform_matrix


def transform_to_matrix(transform):
    """geometry_msgs/Transform -> 4x4; ValueError for a zero or non-finite quaternion."""
    t, q = transform.translation, transform.rotation
    return transform_matrix((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def pose_to_matrix(pose):
    """geometry_msgs/Pose -> 4x4; ValueError for a zero or non-finite quaternion."""
    p, q = pose.position, pose.orientation
    return transform_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
