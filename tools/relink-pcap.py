#!/usr/bin/env python3
"""Rewrites an Ethernet pcap into another link type, for decoder tests.

    tools/relink-pcap.py sll|raw|null IN.pcap OUT.pcap

sll: Linux cooked capture (113); raw: raw IPv4 (228); null: BSD loopback (0).
Only IPv4 frames without VLAN tags are kept (all our synthetic captures).
"""
import struct
import sys

LINKTYPES = {"sll": 113, "raw": 228, "null": 0}


def relink(kind, frame):
    if len(frame) < 14 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    if kind == "sll":
        # packet type 0 (to us), ARPHRD_ETHER, address length 6, address, protocol
        return struct.pack(">HHH8sH", 0, 1, 6, frame[6:12] + b"\0\0", 0x0800) + ip
    if kind == "raw":
        return ip
    if kind == "null":
        return struct.pack("<I", 2) + ip  # AF_INET, host byte order (little endian here)
    raise SystemExit(f"unknown link type {kind}")


def main():
    kind, src, dst = sys.argv[1:4]
    data = open(src, "rb").read()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    ver_major, ver_minor, zone, sigfigs, snaplen, _ = struct.unpack(endian + "HHiIII", data[4:24])
    out = [magic + struct.pack(endian + "HHiIII", ver_major, ver_minor, zone, sigfigs, snaplen, LINKTYPES[kind])]
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        new = relink(kind, frame)
        if new is None:
            continue
        out.append(struct.pack(endian + "IIII", sec, frac, len(new), len(new)) + new)
    open(dst, "wb").write(b"".join(out))
    print(f"made {dst} ({kind})")


if __name__ == "__main__":
    main()
