"""A loopback live stream for the tests: `python live_server.py FILE SECONDS` serves FILE (an MPEG-TS video
SECONDS long) over HTTP at real-time pace, as a camera or an encoder would (chunked, no length, the bytes of each
moment sent when that moment comes), to every client from the start; prints its port, then serves until killed.
`--html` serves a web page instead."""

import http.server
import sys
import time


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    data = open(path, "rb").read()
    html = "--html" in sys.argv

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if html else "video/mp2t")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            body = b"<html><body><h1>Not a video</h1></body></html>" * 50 if html else data
            started, sent, step = time.monotonic(), 0, 1880
            try:
                while sent < len(body):
                    due = started + seconds * sent / len(body)  # real time: each byte when its moment comes
                    time.sleep(max(0.0, due - time.monotonic()))
                    chunk = body[sent:sent + step]
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
