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


def main():
    url = sys.argv[1]
    with connect(url, compression="deflate", max_size=4 << 20, open_timeout=10) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if not extensions.startswith("permessage-deflate"):
            fail(f"permessage-deflate not negotiated (Sec-WebSocket-Extensions: {extensions!r})")
        checked = 0
        for size in SIZES:
            for sent in (text(size), binary(size)):
                ws.send(sent)
                got = ws.recv(timeout=10)
                if type(got) is not type(sent) or got != sent:
                    fail(f"{type(sent).__name__} of {size} bytes: echo differs")
                checked += 1
        ws.close(1000, "done")
        if ws.close_code != 1000:
            fail(f"closed with {ws.close_code}")
    # The same through the server's fan-out (a topic the connection itself is on).
    with connect(url + "broadcast", compression="deflate", max_size=4 << 20,
                 open_timeout=10) as ws:
        if not ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith(
                "permessage-deflate"):
            fail("/broadcast: permessage-deflate not negotiated")
        for size in SIZES[1:]:
            for sent in (text(size), binary(size)):
                ws.send(sent)
                got = ws.recv(timeout=10)
                if type(got) is not type(sent) or got != sent:
                    fail(f"broadcast {type(sent).__name__} of {size} bytes: differs")
                checked += 1
        ws.close(1000, "done")
        if ws.close_code != 1000:
            fail(f"/broadcast closed with {ws.close_code}")
    print(f"python client: OK: {checked} messages (echo and broadcast), extensions {extensions!r}")


if __name__ == "__main__":
    main()
