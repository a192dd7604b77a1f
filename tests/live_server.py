"""A loopback live stream for the tests: `python live_server.py FILE SECONDS` serves FILE (an MPEG-TS video
SECONDS long) over HTTP as a live encoder would: chunked, no length, each byte when its moment comes, and a client
that connects later joins where the stream is now (from the first client's start), not at the beginning. Prints its
port, then serves until killed. `--cut AT GAP`: at AT seconds every connection is cut, and for GAP seconds new ones
are closed at once (a network fault); then the stream goes on. `--html` serves a web page instead."""

import http.server
import sys
import threading
import time

PACKET = 188  # MPEG-TS packets: a joining client starts on one


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
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

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
