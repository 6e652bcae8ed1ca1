#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""endpoint.py PORT — bench-connectors' local HTTP JSON service: a threaded
http.server with keep-alive (HTTP/1.1, as vpsd's curl reuses connections)
that reads each POST in full and answers {"verdict":"continue"}; /slow
answers the same after SLOW_SECONDS (2 s), for the event-loop test.  Runs
in its own process so its GIL is not the load generator's."""
import http.server, socket, sys, time

SLOW_SECONDS = 2.0
REPLY = b'{"verdict":"continue"}'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # http.server writes the headers and the body separately: with Nagle
        # the body waits for the client's delayed ACK (40 ms per call)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if self.path.startswith("/slow"):
            time.sleep(SLOW_SECONDS)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
