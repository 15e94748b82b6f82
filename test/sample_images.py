#!/usr/bin/env python3
"""Print sample PNG images as SQL rows: (file_name, hex bytes).

Used by the demo: a few small solid-colour coffee swatches, generated with
the standard library only (zlib for the PNG data stream).
"""
import struct
import sys
import zlib


def png(width, height, rgb):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


SAMPLES = [
    ("espresso.png", 64, 48, (59, 36, 23)),
    ("latte.png", 64, 48, (200, 160, 120)),
    ("cappuccino.png", 48, 48, (150, 105, 70)),
    ("latte-copy.png", 64, 48, (200, 160, 120)),  # same bytes as latte.png
]


def main():
    rows = ["('%s', '\\x%s'::bytea)" % (name, png(w, h, rgb).hex())
            for name, w, h, rgb in SAMPLES]
    sys.stdout.write("VALUES " + ",\n       ".join(rows) + "\n")


if __name__ == "__main__":
    main()
