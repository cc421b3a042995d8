#!/usr/bin/env python3
"""A static file server for the upgrade tests, on 127.0.0.1 only.

httpd.py DIR PORTFILE [--port P] [--die-after N]

Serves DIR on port P of 127.0.0.1 (default: an ephemeral one) and writes
the port to PORTFILE once it listens. With --die-after N, the process exits (without
answering) at the N+1th request for a file under objects/: a server that
goes away in the middle of a pull. Every request is logged on stderr.
"""
import http.server
import os
import sys


def main():
    root, portfile = sys.argv[1], sys.argv[2]
    die_after, port = None, 0
    args = sys.argv[3:]
    while args:
        opt, val = args[0], int(args[1])
        if opt == "--die-after":
            die_after = val
        elif opt == "--port":
            port = val
        else:
            sys.exit("httpd.py: unknown option " + opt)
        args = args[2:]
    served = [0]

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=root, **kw)

        def do_GET(self):
            if self.path.startswith("/objects/") and die_after is not None:
                if served[0] >= die_after:
                    sys.stderr.write("httpd.py: dying at %s\n" % self.path)
                    sys.stderr.flush()
                    os._exit(3)
                served[0] += 1
            super().do_GET()

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, portfile)
    server.serve_forever()


if __name__ == "__main__":
    main()
