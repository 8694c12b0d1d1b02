#!/usr/bin/env python3
"""One HTTP/1.1 request sent byte for byte (no client normalizes its target).

    raw_http.py PORT TARGET [--wait SECONDS] [--unfinished] [--body-contains TEXT]

Prints "<status> <seconds>" once the server has answered and closed the
connection, or "open <seconds>" if it still had not after --wait seconds (10).
--unfinished sends the request line and one header, never the blank line
that ends the head (slow loris): the server should close the connection.
--body-contains prints "yes"/"no" after the status: whether the answer holds TEXT.
"""
import argparse
import socket
import time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("target")
parser.add_argument("--wait", type=float, default=10.0)
parser.add_argument("--unfinished", action="store_true")
parser.add_argument("--body-contains")
args = parser.parse_args()

head = f"GET {args.target} HTTP/1.1\r\nHost: localhost\r\n"
if not args.unfinished:
    head += "Connection: close\r\n\r\n"
started = time.monotonic()
connection = socket.create_connection(("127.0.0.1", args.port))
connection.settimeout(args.wait)
connection.sendall(head.encode("latin-1"))
received = b""
try:
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
except socket.timeout:
    print(f"open {time.monotonic() - started:.1f}")
    raise SystemExit(0)
except ConnectionResetError:
    pass
elapsed = time.monotonic() - started
status = received.split(b" ", 2)[1].decode() if received.startswith(b"HTTP/") else "closed"
line = f"{status} {elapsed:.1f}"
if args.body_contains is not None:
    line += " yes" if args.body_contains.encode() in received else " no"
print(line)
