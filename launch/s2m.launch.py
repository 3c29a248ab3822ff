"""s2m_ros: camera node + fusion node (+ RViz with rviz:=true), as a Python launch file.

    ros2 launch s2m_ros s2m.launch.py camera_topic:=/cam_front/image_raw lidar_topic:=/lidar_top/points rviz:=true

The same launch description as launch/s2m.launch.xml (arguments, defaults, nodes,
parameters, remappings); test/test_launch_py.py keeps the two equal. Only APIs that
Humble, Jazzy and Kilted share are used.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "s2m_ros"

# (name, default, description); the defaults that name files live in this package's share
ARGUMENTS = (
    ("namespace", "", "namespace of both nodes and their relative topics"),
    ("camera_topic", "/camera/image_raw",
     "sensor_msgs/Image topic (its /compressed sibling is used with input.transport:=compressed)"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic"),
    ("lidar_topic", "/lidar/points", "sensor_msgs/PointCloud2 topic"),
    ("odom_topic", "/odom", "nav_msgs/Odometry topic (fusion_node, only with fixed_frame.enabled)"),
    ("use_sim_time", "false", "use /clock (bag replay)"),
    ("s2m_params_file", ("config", "s2m.yaml"), "s2m_node parameters"),
    ("fusion_params_file", ("config", "fusion.yaml"), "fusion_node parameters"),
    ("rviz", "false", "also start rviz2 (needs a display and the rviz2 package)"),
    ("rviz_config", ("config", "s2m.rviz"),
     "rviz2 display config (its topics assume the default namespace and topic arguments)"),
)


def _default(value):
    """A plain default, or a path (tuple of parts) inside this package's share."""
    if isinstance(value, tuple):
        return PathJoinSubstitution([FindPackageShare(PACKAGE)] + list(value))
    return value


def generate_launch_description():
    arg = LaunchConfiguration
    # launch_ros YAML-parses a substituted parameter value, so "false"/"true" become booleans
    sim_time = {"use_sim_time": arg("use_sim_time")}
    actions = [DeclareLaunchArgument(name, default_value=_default(default), description=description)
               for name, default, description in ARGUMENTS]
    actions.append(Node(
        package=PACKAGE,
        executable="s2m_node",
        name="s2m_node",
        namespace=arg("namespace"),
        output="screen",
        parameters=[arg("s2m_params_file"), sim_time],
        remappings=[
            ("image", arg("camera_topic")),
            ("image/compressed", [arg("camera_topic"), "/compressed"]),
            ("camera_info", arg("camera_info_topic")),
        ],
    ))
    actions.append(Node(
        package=PACKAGE,
        executable="fusion_node",
        name="fusion_node",
        namespace=arg("namespace"),
        output="screen",
        parameters=[arg("fusion_params_file"), sim_time],
        remappings=[
            ("points", arg("lidar_topic")),
            ("camera_info", arg("camera_info_topic")),
            ("odom", arg("odom_topic")),
        ],
    ))
    actions.append(Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        output="screen",
        arguments=["-d", arg("rviz_config")],
        parameters=[sim_time],
        condition=IfCondition(arg("rviz")),
    ))
    return LaunchDescription(actions)
