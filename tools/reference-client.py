#!/usr/bin/env python3
"""A literal reference-style Dahua P2P client, for checking the emulator.

It follows DH-P2P.md §3.1 step by step, in one of the two reference styles:

--style py (default), the original Python proof of concept: Python order,
  DHPOST with Content-Type and Content-Length, three unconnected sockets
  (A: main/relay/agent, B: P2P server, C: p2p-channel and device), the [py]
  STUN success response (address not inverted), an empty ACK after the sign.
--style rs, the Rust port: Rust order (/online/relay before /probe/device),
  no Content-* headers, two connected sockets (S1: main, p2p-channel, then
  re-connected to the device; S2: P2P server, relay, agent, relay-channel),
  the inverted STUN address, no ACK after the sign.

Both use the legacy dialect, the reference PTCP counter rules (pid counts
down per data packet, lmid is a packet counter), read exactly five device
datagrams after the STUN success, and then open one realm carrying one
request.

It adds only what a test needs: a timeout on every read (the original blocks
forever) and a clear exit code. Standard library only.

    tools/reference-client.py --cloud 127.0.0.1:8800 --serial DEMO00000000001 \
        --remote-port 554 --send 'OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n'

Exit codes: 0 the realm answered; 1 a protocol step failed (printed).
"""

import argparse
import base64
import datetime
import hashlib
import random
import socket
import struct
import sys

USER = "cba1b29e32cb17aa46b8ff9e73c7f40b"
KEY = "996103384cdf19179e19243e959bbf8b"
SYN = b"\x00\x03\x01\x00"
TIMEOUT = 5.0

cseq = 0
style = "py"


class Fail(Exception):
    pass


def request(path, body=""):
    """DH-P2P §2.2, [py] form."""
    global cseq
    cseq += 1
    nonce = random.randrange(2**31)
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(
        hashlib.sha1(f"{nonce}{created}DHP2P:{USER}:{KEY}".encode()).digest()
    ).decode()
    head = [
        ("DHPOST " if body else "DHGET ") + path + " HTTP/1.1",
        f"CSeq: {cseq}",
        'Authorization: WSSE profile="UsernameToken"',
        f'X-WSSE: UsernameToken Username="{USER}", PasswordDigest="{digest}", '
        f'Nonce="{nonce}", Created="{created}"',
    ]
    if body and style == "py":
        head += ["Content-Type: ", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def parse_response(data):
    """DH-P2P §2.4: code, and body elements (flat)."""
    text = data.decode()
    head, _, body = text.partition("\r\n\r\n")
    status = head.split("\r\n")[0].split(" ")
    if len(status) < 3:
        raise Fail(f"bad status line: {head!r}")
    elements = {}
    rest = body
    while "<" in rest:
        start = rest.find("<")
        end = rest.find(">", start)
        name = rest[start + 1 : end]
        if name.startswith("/") or name == "body":
            rest = rest[end + 1 :]
            continue
        close = rest.find(f"</{name}>", end)
        elements[name] = rest[end + 1 : close]
        rest = rest[close + len(name) + 3 :]
    return int(status[1]), elements


def read(sock, what):
    try:
        data, _ = sock.recvfrom(65536)
    except socket.timeout:
        raise Fail(f"timed out waiting for {what}")
    return data


def send(sock, addr, data):
    """py: unconnected sendto; rs: connect to the peer, then send."""
    if style == "rs":
        sock.connect(addr)
        sock.send(data)
    else:
        sock.sendto(data, addr)


def ask(sock, addr, path, body="", what=None):
    send(sock, addr, request(path, body))
    code, elements = parse_response(read(sock, what or path))
    if code >= 400:
        raise Fail(f"{path}: {code}")
    return elements


def hostport(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Ptcp:
    """The reference counter rules (DH-P2P §6.2)."""

    def __init__(self, sock, addr):
        self.sock, self.addr = sock, addr
        self.sent = self.recv = self.k = self.id = self.rmid = 0

    def send(self, body):
        pid = 0x0002FFFF if body == SYN else 0x0000FFFF - self.k
        packet = b"PTCP" + struct.pack(">5I", self.sent, self.recv, pid, self.id, self.rmid) + body
        send(self.sock, self.addr, packet)
        self.sent += len(body)
        self.id += 1
        if body and body != SYN:
            self.k += 1

    def read(self, what):
        while True:
            data = read(self.sock, what)
            if data[:4] == b"PTCP":
                break
            raise Fail(f"non-PTCP datagram while waiting for {what}: {data[:8].hex()}")
        self.recv += len(data) - 24
        self.rmid = struct.unpack(">I", data[16:20])[0]
        return data[24:]


def sub(t, realm=0, length=0, data=b""):
    return struct.pack(">III", (t << 24) | length, realm, 0) + data


def inv(b):
    return bytes(x ^ 0xFF for x in b)


def main():
    global style
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud", required=True, help="main cloud HOST:PORT")
    parser.add_argument("--serial", required=True)
    parser.add_argument("--style", choices=["py", "rs"], default="py")
    parser.add_argument("--remote-port", type=int, default=554)
    parser.add_argument("--send", default="OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\\r\\nCSeq: 1\\r\\n\\r\\n")
    args = parser.parse_args()
    style = args.style
    main_addr = hostport(args.cloud)
    sn = args.serial
    a, b, c = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for s in (a, b, c):
        s.bind(("0.0.0.0", 0))
        s.settimeout(TIMEOUT)
    if style == "rs":
        # S1 = c (main, p2p-channel, device), S2 = b (everything else).
        main_sock, p2psrv_sock, relay_sock = c, b, b
    else:
        main_sock, p2psrv_sock, relay_sock = a, b, a

    ask(main_sock, main_addr, "/probe/p2psrv")
    us = hostport(ask(main_sock, main_addr, f"/online/p2psrv/{sn}")["US"])
    if style == "py":
        ask(p2psrv_sock, us, f"/probe/device/{sn}")
        relay = hostport(ask(main_sock, main_addr, "/online/relay")["Address"])
    else:
        relay = hostport(ask(main_sock, main_addr, "/online/relay")["Address"])
        ask(p2psrv_sock, us, f"/probe/device/{sn}")
    identify = bytes(random.randrange(256) for _ in range(8))
    ident_text = " ".join(f"{x:x}" for x in identify)
    send(
        c,
        main_addr,
        request(
            f"/device/{sn}/p2p-channel",
            f"<body><Identify>{ident_text}</Identify><IpEncrpt>true</IpEncrpt>"
            f"<LocalAddr>127.0.0.1:{c.getsockname()[1]}</LocalAddr><version>5.0.0</version></body>",
        ),
    )
    lease = ask(relay_sock, relay, "/relay/agent")
    token, agent = lease["Token"], hostport(lease["Agent"])
    ask(relay_sock, agent, f"/relay/start/{token}", "<body><Client>:0</Client></body>")
    code, answer = parse_response(read(c, "p2p-channel answer"))
    if (style == "py" and code < 200) or (style == "rs" and code == 100):
        code, answer = parse_response(read(c, "p2p-channel final answer"))
    if code >= 400:
        raise Fail(f"p2p-channel: {code}")
    device = hostport(answer["PubAddr"])
    local = hostport(answer["LocalAddr"])
    send(
        relay_sock,
        main_addr,
        request(f"/device/{sn}/relay-channel", f"<body><agentAddr>{lease['Agent']}</agentAddr></body>"),
    )
    if style == "rs":
        relay_sock.connect(agent)
    code, _ = parse_response(read(relay_sock, "agent notification"))
    if code >= 400:
        raise Fail(f"agent notification: {code}")

    agent_session = Ptcp(relay_sock, agent)
    agent_session.send(SYN)
    agent_session.read("agent SYN")
    agent_session.send(sub(0x17))
    while True:
        body = agent_session.read("sign")
        if body:
            break
    sign = body[12:]
    if style == "py":
        agent_session.send(b"")
    if style == "rs":
        c.connect(device)

    cookie = bytes(random.randrange(256) for _ in range(4))
    tid = bytes(random.randrange(256) for _ in range(12))
    addr = lambda ip, port: struct.pack(">H", port) + socket.inet_aton(ip)
    send(
        c,
        device,
        inv(b"\x00\x01\x00\x18") + cookie + tid + inv(b"\x80\x2a\x00\x08") + inv(identify)
        + inv(b"\x00\x04\x00\x08\x00\x01") + inv(addr(*device)),
    )
    rtid = read(c, "device STUN")[8:20]
    local_attr = inv(addr(*local)) if style == "rs" else addr(*local)
    send(
        c,
        device,
        inv(b"\x01\x01\x00\x18") + cookie + rtid + inv(b"\x80\x29\x00\x08") + inv(identify)
        + inv(b"\x00\x04\x00\x08\x00\x01") + local_attr,
    )
    for i in range(5):
        read(c, f"discarded device datagram {i + 1}")

    dev = Ptcp(c, device)
    dev.send(SYN)
    if dev.read("device SYN") != SYN:
        raise Fail("device did not answer SYN with SYN")
    dev.send(sub(0x19, data=sign))
    body = dev.read("0x1A")
    if not body:
        body = dev.read("0x1A after ACK")
    if body[0] != 0x1A:
        raise Fail(f"expected 0x1A, got {body[:1].hex()}")
    dev.send(sub(0x1B))
    if dev.read("ACK of 0x1B") != b"":
        raise Fail("0x1B not answered by an empty ACK")

    realm = random.randrange(1, 2**32)
    dev.send(sub(0x11, realm) + struct.pack(">I", args.remote_port) + socket.inet_aton("127.0.0.1"))
    body = dev.read("BIND answer")
    if not body:
        body = dev.read("STATUS after ACK")
    if body[0] != 0x12 or body[12:16] != b"CONN":
        raise Fail(f"BIND not answered with CONN: {body.hex()}")
    dev.send(b"")
    payload = args.send.encode().decode("unicode_escape").encode("latin-1")
    dev.send(sub(0x10, realm, len(payload), payload))
    reply = b""
    while not reply.endswith(b"\r\n\r\n"):
        body = dev.read("realm data")
        if not body:
            continue
        dev.send(b"")
        if body[0] == 0x10:
            reply += body[12:]
        elif body[0] == 0x13:
            continue
        else:
            raise Fail(f"unexpected body type 0x{body[0]:02x}")
    sys.stdout.write(reply.decode("latin-1"))
    dev.send(sub(0x12, realm, data=b"DISC"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"reference-client: {e}", file=sys.stderr)
        sys.exit(1)
