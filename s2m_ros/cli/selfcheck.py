"""Self-check of the installed nodes (the live part of `make demo`).

Starts the installed s2m_node and fusion_node as separate processes with the
shipped YAML (loopback-only DDS, a private domain), feeds them CameraInfo, a synthetic
camera image, a bad image and a LiDAR cloud over DDS, reads their outputs and diagnostics
back and stops them with SIGINT. Prints one line per check and exits non-zero if any fails.
The camera node runs the weight-free pipeline on a synthetic apron frame with a planted
suitcase and must answer with masks stamped like the frame; the fusion node must match
those masks to the cloud and publish an ObstacleArray stamped like the cloud.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time


def _start(exe, params, log_dir):
    log = open(os.path.join(log_dir, exe + ".log"), "w")
    proc = subprocess.Popen([exe, "--ros-args", "--params-file", params, "-p", "diagnostics.period_s:=0.2"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def run(timeout=20.0):
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(101 - os.getpid() % 50))
    import rclpy
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from s2m_ros.cli.probe import Probe, synthetic_image, velodyne_like_cloud
    from s2m_ros.ros.conversions.image import numpy_to_image
    from s2m_ros.ros.conversions.s2m_msgs import make_header, msg_to_frame_masks, stamp_to_ns
    from s2m_ros.sim.still import render_apron
    from s2m_ros.msg import ObstacleArray, OodMaskArray

    lib = os.path.join(get_package_prefix("s2m_ros"), "lib", "s2m_ros")
    config = os.path.join(get_package_share_directory("s2m_ros"), "config")
    # large best-effort messages need the shared-memory profile (default SHM segments are 512 KiB)
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(config, "fastdds_localhost.xml"))
    log_dir = tempfile.mkdtemp(prefix="s2m-selfcheck-")
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print("  [%s] %s%s" % ("ok" if ok else "FAIL", name, (": " + detail) if detail else ""), flush=True)

    print("s2m_ros self-check (ROS_DOMAIN_ID=%s, loopback only; logs in %s)" % (os.environ["ROS_DOMAIN_ID"], log_dir))
    procs = [_start(os.path.join(lib, "s2m_node"), os.path.join(config, "s2m.yaml"), log_dir),
             _start(os.path.join(lib, "fusion_node"), os.path.join(config, "fusion.yaml"), log_dir)]
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context, "s2m_selfcheck")
    try:
        image_pub = probe.publisher(Image, "/image")
        cloud_pub = probe.publisher(PointCloud2, "/points")
        mask_pub = probe.publisher(OodMaskArray, "/ood/masks", reliable=True)
        t0 = time.monotonic()
        up = probe.spin_until(lambda: image_pub.get_subscription_count() and cloud_pub.get_subscription_count()
                              and mask_pub.get_subscription_count(), timeout)
        check("both nodes up and subscribed", up, "%.1f s" % (time.monotonic() - t0))
        stamp = time.time_ns()
        info_pub = probe.publisher(CameraInfo, "/camera_info", reliable=True)
        info = CameraInfo(header=make_header(stamp, "camera"), width=1280, height=720, distortion_model="plumb_bob",
                          d=[0.0] * 5, k=[900.0, 0.0, 640.0, 0.0, 900.0, 360.0, 0.0, 0.0, 1.0])
        check("fusion_node takes the CameraInfo",
              probe.publish_until(info_pub, info, "fusion_node", "camera_info_received", 1, timeout))
        obstacles = probe.collect(ObstacleArray, "/obstacles")
        received = []
        probe.node.create_subscription(OodMaskArray, "/ood/masks", received.append, 10)
        apron, truth = render_apron(1280, 720, seed=2, objects=["suitcase"], object_z=(6.0, 8.0))
        image = numpy_to_image(apron, "bgr8", header=make_header(stamp, "camera"))
        check("s2m_node decodes a 1280x720 bgr8 image",
              probe.publish_until(image_pub, image, "s2m_node", "frames_decoded", 1, timeout))
        mine = probe.spin_until(lambda: any(stamp_to_ns(m.header.stamp) == stamp for m in received), timeout)
        found = [m for m in received if stamp_to_ns(m.header.stamp) == stamp]
        probe.spin_until(lambda: "latency_in_node_ms" in probe.diag("s2m_node"), 3.0)
        iou = 0.0
        if found:
            obj = truth.objects[0].mask
            for m in msg_to_frame_masks(found[0]).masks:
                full = m.full_mask(1280, 720)
                iou = max(iou, float((full & obj).sum()) / float((full | obj).sum()))
        check("s2m_node answers with masks stamped like the frame, one on the planted suitcase",
              mine and iou >= 0.5, "%d mask(s), best IoU %.2f, %s ms in node" % (
                  len(found[0].masks) if found else 0, iou,
                  probe.diag("s2m_node").get("latency_in_node_ms", "?")))
        bad = numpy_to_image(synthetic_image(64, 48), "rgb8", header=make_header(stamp, "camera"))
        bad.step = 10
        check("s2m_node rejects a corrupt image and keeps running",
              probe.publish_until(image_pub, bad, "s2m_node", "bad_input", 1, timeout)
              and procs[0][0].poll() is None)
        check("fusion_node decodes a 120k-point cloud",
              probe.publish_until(cloud_pub, velodyne_like_cloud(120000, stamp), "fusion_node", "clouds_received",
                                  1, timeout),
              "%s valid points" % probe.diag("fusion_node").get("last_cloud_points", "?"))
        matched = probe.spin_until(lambda: probe.counter("fusion_node", "matched") >= 1, timeout)
        check("fusion_node time-matches the camera node's masks to the cloud", matched,
              "dt %s ms" % probe.diag("fusion_node").get("last_match_dt_ms", "?"))
        fused = probe.spin_until(lambda: any(stamp_to_ns(m.header.stamp) == stamp for m in obstacles), timeout)
        check("fusion_node fuses them and publishes obstacles stamped like the cloud", fused,
              "%s fused, latency %s ms" % (probe.diag("fusion_node").get("fused", "?"),
                                           probe.diag("fusion_node").get("latency_in_node_ms", "?")))
    finally:
        probe.close()
        rclpy.try_shutdown(context=context)
        for proc, log in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(5)
            log.close()
            check("%s exits cleanly on SIGINT" % os.path.basename(proc.args[0]), code == 0, "exit code %s" % code)
    print("%d/%d checks passed." % (sum(results), len(results)))
    return 0 if all(results) else 1


def main(argv=None):
    from s2m_ros.cli.common import ArgumentParser, guarded

    parser = ArgumentParser(prog="s2m-selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each check")
    args = parser.parse_args(argv)
    if not 0 < args.timeout < 3600:
        parser.error("--timeout must be in (0, 3600) seconds")
    return guarded("s2m-selfcheck", run, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
