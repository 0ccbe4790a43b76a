#!/usr/bin/python3
"""A third-party RTSP server for dhp2p's tests: gst-rtsp-server, not ours.

Run it with Debian's /usr/bin/python3 (it needs `gi`; a pyenv python usually
lacks it). Debian packages: python3-gi gir1.2-gst-rtsp-server-1.0
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp (tools/test
installs them).

    /usr/bin/python3 tools/gst-rtsp-server.py --port 0 [--user U --password P]

Serves live H.264 (videotestsrc 320x240 at 15 fps, x264 zerolatency, an IDR
every 15 frames) at --path (default /cam/realmonitor). gst-rtsp-server matches
mount points on the URL path only, so a Dahua-style query string still plays:
    rtsp://127.0.0.1:PORT/cam/realmonitor?channel=1&subtype=0
Content-Base echoes the host:port the client asked for (query dropped) and
the track control is relative (stream=0), so clients reaching it through a
proxy or tunnel SETUP through that proxy too.
Once listening it prints exactly one line on stdout,
    ready rtsp=127.0.0.1:PORT
and logs to stderr. SIGTERM/SIGINT stop it with exit status 0.
"""

import argparse
import signal
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
except (ImportError, ValueError) as err:
    sys.stderr.write(
        f"gst-rtsp-server.py: cannot load GStreamer's RTSP server ({err}); install the "
        "Debian packages python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
        "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad "
        "gstreamer1.0-libav gstreamer1.0-rtsp and run with /usr/bin/python3\n"
    )
    sys.exit(2)

PIPELINE = (
    "( videotestsrc is-live=true "
    "! video/x-raw,width=320,height=240,framerate=15/1 "
    "! x264enc tune=zerolatency key-int-max=15 "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


def log(msg):
    sys.stderr.write(f"gst-rtsp-server.py: {msg}\n")
    sys.stderr.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", default="127.0.0.1", help="IP address to listen on")
    p.add_argument("--port", type=int, default=8554, help="TCP port (0: any free port)")
    p.add_argument("--path", default="/cam/realmonitor", help="mount point")
    p.add_argument("--user", help="require this user name (with --password)")
    p.add_argument("--password", help="password of --user")
    p.add_argument(
        "--auth",
        choices=["basic", "digest"],
        default="digest",
        help="authentication scheme offered when --user is given",
    )
    args = p.parse_args()
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    return args


def make_auth(args):
    """Only the configured user may see and play the media; nobody else."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    if args.auth == "basic":
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
    else:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.add_digest(args.user, args.password, token)
    return auth


def main():
    args = parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    # One live pipeline for every client: no per-client encoder start-up, and
    # clients arriving one after another all get the same stream.
    factory.set_shared(True)
    # Keep the shared pipeline when a client leaves: the next one joins at once.
    factory.set_stop_on_disconnect(False)
    # TCP-interleaved (what a tunnel carries, `-rtsp_transport tcp`) and UDP.
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
    if args.user is not None:
        server.set_auth(make_auth(args))
        factory.add_role_from_structure(
            Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
    server.get_mount_points().add_factory(args.path, factory)

    if server.attach(None) == 0:
        log(f"cannot listen on {args.address}:{args.port}")
        return 1
    port = server.get_bound_port()
    loop = GLib.MainLoop()

    def stop(signum):
        log(f"signal {signum}: stopping")
        loop.quit()
        return GLib.SOURCE_REMOVE

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, stop, signum)

    auth = f"{args.auth} auth as {args.user}" if args.user is not None else "no auth"
    log(f"serving {args.path} on {args.address}:{port} ({auth})")
    sys.stdout.write(f"ready rtsp={args.address}:{port}\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
