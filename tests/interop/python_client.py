"""Python `websockets` against `echo --deflate`: negotiates permessage-deflate (the client's
default), round-trips text and binary of 0 B, 1 KiB and 1 MiB, then those of 1 KiB and 1 MiB
through `/broadcast` (the server's fan-out), and checks the server's Sec-WebSocket-Extensions
answer.

Usage: python python_client.py ws://127.0.0.1:PORT/
"""

import sys

from websockets.sync.client import connect

WORDS = ["ring", "socket", "deflate", "frame", "message", "window", "inflate", "core",
         "server", "client", "echo", "context", "takeover", "bits", "json", '{"id":', "},\n"]
SIZES = [0, 1024, 1 << 20]


def lcg(seed):
    x = seed

    def step():
        nonlocal x
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        return x >> 16

    return step


def words(size):
    """Words drawn at random from a short list: compresses well, not trivially."""
    step = lcg(1)
    parts, length = [], 0
    while length < size:
        w = WORDS[step() % len(WORDS)] + " "
        parts.append(w)
        length += len(w)
    return "".join(parts)[:size]


def text(size):
    """`size` bytes of UTF-8, starting with a two-byte character."""
    return "" if size == 0 else "\u00e9" + words(size - 2)


def binary(size):
    """The same bytes with the top bit flipped (not UTF-8)."""
    return bytes(ord(c) ^ 0x80 for c in words(size))


def fail(message):
    print(f"python client: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def round_trip(url, sizes, label):
    """Opens `url`, sends text and binary of each size and checks what comes back is the
    same; returns the Sec-WebSocket-Extensions answer and how many messages were checked."""
    checked = 0
    with connect(url, compression="deflate", max_size=4 << 20, open_timeout=10) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if not extensions.startswith("permessage-deflate"):
            fail(f"{label}: permessage-deflate not negotiated "
                 f"(Sec-WebSocket-Extensions: {extensions!r})")
        for size in sizes:
            for sent in (text(size), binary(size)):
                ws.send(sent)
                got = ws.recv(timeout=10)
                if type(got) is not type(sent) or got != sent:
                    fail(f"{label}: {type(sent).__name__} of {size} bytes differs")
                checked += 1
        ws.close(1000, "done")
        if ws.close_code != 1000:
            fail(f"{label}: closed with {ws.close_code}")
    return extensions, checked


def main():
    url = sys.argv[1]
    extensions, echoed = round_trip(url, SIZES, "echo")
    # The same through the server's fan-out (a topic the connection itself is on).
    _, fanned = round_trip(url + "broadcast", SIZES[1:], "broadcast")
    print(f"python client: OK: {echoed + fanned} messages (echo and broadcast), "
          f"extensions {extensions!r}")


if __name__ == "__main__":
    main()
