#!/usr/bin/env python3
"""Throughput of the installed s2m_node per profile, over DDS on loopback (run after `. tools/env.sh`).

For each profile: start s2m_node, publish 1280x720 synthetic apron frames at 30 Hz for --seconds,
read its diagnostics (output rate, processed/dropped frames, median per-stage latency) and stop it.
With --overlay PATH, also saves the node's /ood/overlay image of the first profile (README picture).

  python tools/node_throughput.py [--profiles surface+grabcut,espnet+grabcut,...] [--models models]
                                  [--seconds 10] [--json out.json] [--overlay docs/overlay.jpg]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default="surface+grabcut")
    ap.add_argument("--models", default="models")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--json")
    ap.add_argument("--overlay")
    args = ap.parse_args()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    import cv2
    import rclpy
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    from sensor_msgs.msg import Image

    from s2m_ros.cli.bench import pipeline_config as bench_config
    from s2m_ros.cli.probe import Probe
    from s2m_ros.ros.conversions.image import image_to_numpy, numpy_to_image
    from s2m_ros.ros.conversions.s2m_msgs import make_header
    from s2m_ros.sim.still import render_apron

    exe = os.path.join(get_package_prefix("s2m_ros"), "lib", "s2m_ros", "s2m_node")
    params = os.path.join(get_package_share_directory("s2m_ros"), "config", "s2m.yaml")
    image, _ = render_apron(1280, 720, seed=7, objects=["cone", "suitcase", "chock", "hose"], object_z=(6.0, 16.0))
    results = {}
    overlay = []
    for profile in [p for p in args.profiles.split(",") if p]:
        # the same model files `s2m bench --models` uses (from `make models`)
        cfg = bench_config(profile, args.models, "onnxruntime", 2)
        extra = ["-p", "profile:=" + profile, "-p", "diagnostics.period_s:=0.5", "-p", "threads:=2"]
        for param, value in (("models.scorer", cfg.scorer_model), ("models.mobilesam_encoder", cfg.mobilesam_encoder),
                             ("models.mobilesam_decoder", cfg.mobilesam_decoder)):
            if value:
                extra += ["-p", "%s:=%s" % (param, value)]
        log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        proc = subprocess.Popen([exe, "--ros-args", "--params-file", params] + extra, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        probe = Probe(ctx, "s2m_throughput_probe")
        try:
            if profile == args.profiles.split(",")[0] and args.overlay:
                probe.node.create_subscription(Image, "/ood/overlay", overlay.append, 5)
            pub = probe.publisher(Image, "/image")
            if not probe.wait_for_subscriber(pub, timeout=60):
                results[profile] = {"error": open(log.name).read()[-500:]}
                continue
            # distinct frames (one pixel differs), so no per-frame cache (MobileSAM embedding) can help
            frames = []
            for j in range(30):
                variant = image.copy()
                variant[0, 0, 0] = j
                frames.append(numpy_to_image(variant, "bgr8", header=make_header(0, "cam")))
            t0 = time.monotonic()
            k = 0
            while time.monotonic() - t0 < args.seconds:
                msg = frames[k % len(frames)]
                msg.header = make_header(10**9 + k * int(1e9 / args.rate), "cam")
                pub.publish(msg)
                k += 1
                t_next = t0 + k / args.rate
                while time.monotonic() < t_next:
                    probe.executor.spin_once(timeout_sec=max(0.0, min(0.005, t_next - time.monotonic())))
            probe.spin_until(lambda: False, timeout=1.5)
            d = probe.diag("s2m_node")
            results[profile] = {
                "published": k, "frames_decoded": int(d.get("frames_decoded", 0)),
                "frames_processed": int(d.get("frames_processed", 0)), "dropped_frames": int(d.get("dropped_frames", 0)),
                "output_rate_hz": float(d.get("output_rate_hz", 0)), "input_rate_hz": float(d.get("input_rate_hz", 0)),
                "median_ms": {k2[len("latency_"):-len("_median_ms")]: float(v) for k2, v in d.items()
                              if k2.startswith("latency_") and k2.endswith("_median_ms")}}
            print("%-22s %s" % (profile, json.dumps(results[profile])))
        finally:
            probe.close()
            rclpy.try_shutdown(context=ctx)
            proc.send_signal(2)
            proc.wait(20)
    if args.overlay and overlay:
        cv2.imwrite(args.overlay, image_to_numpy(overlay[-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
        print("overlay from the node: %s" % args.overlay)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
