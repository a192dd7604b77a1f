"""A loopback live stream for the tests: `python live_server.py FILE SECONDS` serves FILE (an MPEG-TS video
SECONDS long) over HTTP as a live encoder would: chunked, no length, each byte when its moment comes, and a client
that connects later joins where the stream is now (from the first client's start), not at the beginning. Prints its
port, then serves until killed. `--cut AT GAP`: at AT seconds every connection is cut, and for GAP seconds new ones
are closed at once (a network fault); then the stream goes on. `--html` serves a web page instead.

`--rtsp SAVED`: FILE's frames encoded as H.264 (x264, one thread, a key frame a second: what IP cameras send) and
served over RTSP (RTP over UDP, by the `rtsp-rs` server) at real-time pace from the moment the first viewer
connects; the same packets are written to SAVED (MPEG-TS), the file a client's frames must equal.

`--hls DIR`: FILE's packets, unchanged, as an HLS stream (a playlist of one-second MPEG-TS segments written into DIR,
served from there).
`--mjpeg`: FILE's frames as JPEG pictures in one multipart HTTP answer (`multipart/x-mixed-replace`, what webcams and
IP cameras serve as MJPEG), at real-time pace."""

import http.server
import sys
import threading
import time

PACKET = 188  # MPEG-TS packets: a joining client starts on one


def rtsp_main(path: str, seconds: float, saved: str) -> None:
    import socket
    from fractions import Fraction

    import av
    import rtsp

    with av.open(path) as container:
        frames = [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]
    fps = round(len(frames) / seconds)
    height, width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, fps), fps
    encoder.options = {"tune": "zerolatency", "g": str(fps), "bf": "0", "threads": "1", "crf": "18"}
    packets = []
    for index, planes in enumerate([*frames, None]):
        frame = None
        if planes is not None:
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = index
        packets += [(bytes(packet), packet.pts) for packet in encoder.encode(frame)]
    with av.open(saved, "w", format="mpegts") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.time_base = width, height, Fraction(1, fps)
        for data, pts in packets:
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, pts, pts, Fraction(1, fps)
            container.mux(packet)

    with socket.socket() as sock:  # a free port (the server takes an address, not port 0)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = rtsp.Server(f"127.0.0.1:{port}")
    server.start()
    print(port, flush=True)
    while not server.get_viewers():  # listed once the viewer has asked to PLAY
        time.sleep(0.01)
    started = time.monotonic()
    for index, (data, _) in enumerate(packets):
        time.sleep(max(0.0, started + index / fps - time.monotonic()))
        server.send_frame(data, 90000 // fps)
    while True:  # a camera does not end (its stream stalls when it is switched off): the client stops
        time.sleep(1)


def serve(handler) -> None:
    """Serves `handler` (a request handler class, its request log silenced) on a free loopback port, printed first,
    until killed."""
    handler.log_message = lambda self, *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def hls_main(path: str, folder: str) -> None:
    import os

    import av

    os.makedirs(folder, exist_ok=True)
    with av.open(path) as source, av.open(f"{folder}/index.m3u8", "w", format="hls",
                                         options={"hls_time": "1", "hls_list_size": "0"}) as playlist:
        stream = playlist.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                playlist.mux(packet)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=folder, **kwargs)

    serve(Handler)


def mjpeg_main(path: str, seconds: float) -> None:
    import io

    import av

    pictures = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            buffer = io.BytesIO()
            frame.to_image().save(buffer, format="JPEG", quality=95)
            pictures.append(buffer.getvalue())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            started = time.monotonic()
            try:
                for index, picture in enumerate(pictures):
                    time.sleep(max(0.0, started + index * seconds / len(pictures) - time.monotonic()))
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(picture), picture))
                    self.wfile.flush()
                self.wfile.write(b"--frame--\r\n")  # the closing boundary: the stream has ended
            except (BrokenPipeError, ConnectionResetError):
                pass

    serve(Handler)


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    if "--rtsp" in sys.argv:
        return rtsp_main(path, seconds, sys.argv[sys.argv.index("--rtsp") + 1])
    if "--hls" in sys.argv:
        return hls_main(path, sys.argv[sys.argv.index("--hls") + 1])
    if "--mjpeg" in sys.argv:
        return mjpeg_main(path, seconds)
    data = open(path, "rb").read()
    html = "--html" in sys.argv
    cut = (float(sys.argv[sys.argv.index("--cut") + 1]), float(sys.argv[sys.argv.index("--cut") + 2])) \
        if "--cut" in sys.argv else None
    clock = {"start": None}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with lock:
                if clock["start"] is None:
                    clock["start"] = time.monotonic()
                started = clock["start"]
            now = time.monotonic() - started
            if cut and cut[0] <= now < cut[0] + cut[1]:  # the network is down
                self.close_connection = True
                return
            body = b"<html><body><h1>Not a video</h1></body></html>" * 50 if html else data
            sent = int(len(body) * min(1.0, now / seconds)) // PACKET * PACKET  # the stream as it is now
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if html else "video/mp2t")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while sent < len(body):
                    due = started + seconds * sent / len(body)  # real time: each byte when its moment comes
                    time.sleep(max(0.0, due - time.monotonic()))
                    if cut and cut[0] <= time.monotonic() - started < cut[0] + cut[1]:
                        return  # cut: the connection drops without the chunked ending
                    chunk = body[sent:sent + 10 * PACKET]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                pass

    serve(Handler)


if __name__ == "__main__":
    main()
