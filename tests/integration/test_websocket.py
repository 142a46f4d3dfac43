"""MQTT over WebSocket (path /mqtt, subprotocol mqtt) alongside TCP clients."""
import base64
import os
import socket
import struct
import unittest

from harness import (HOST, V311, V5, CONNACK, PINGRESP, PUBLISH, SUBACK, MosquittoSub, Packet,
                     PahoClient, ServerTestCase, connect_packet, mosquitto_pub, packet,
                     publish_packet, read_varint, subscribe_packet)


def http_upgrade(port, path, protocol="mqtt", timeout=10):
    """Sends a WebSocket upgrade request; returns the response head (status line + headers)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")


class RawWebSocket:
    """A minimal RFC 6455 client: frames are built by hand."""

    def __init__(self, port, path="/mqtt", rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the upgrade"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.mqtt = b""

    def frame(self, payload, opcode=2, fin=True, masked=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            header = bytes([b0, (0x80 if masked else 0) | n])
        elif n < 65536:
            header = bytes([b0, (0x80 if masked else 0) | 126]) + struct.pack("!H", n)
        else:
            header = bytes([b0, (0x80 if masked else 0) | 127]) + struct.pack("!Q", n)
        if not masked:
            return header + payload
        mask = os.urandom(4)
        return header + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        """(opcode, payload) of the next server frame; None when closed."""
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126:
                    n, off = struct.unpack_from("!H", self.buf, 2)[0], 4
                elif n == 127:
                    n, off = struct.unpack_from("!Q", self.buf, 2)[0], 10
                if len(self.buf) >= off + n:
                    opcode, payload = self.buf[0] & 0x0F, self.buf[off:off + n]
                    self.buf = self.buf[off + n:]
                    return opcode, payload
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk

    def recv_packet(self, version=V311):
        """Next MQTT packet carried in binary frames (which may split or batch packets)."""
        while True:
            if len(self.mqtt) >= 2:
                try:
                    length, off = read_varint(self.mqtt, 1)
                    if len(self.mqtt) >= off + length:
                        p = Packet(self.mqtt[0], self.mqtt[off:off + length], version)
                        self.mqtt = self.mqtt[off + length:]
                        return p
                except IndexError:
                    pass
            f = self.recv_frame()
            assert f is not None, "closed"
            assert f[0] == 2, f"unexpected frame {f}"
            self.mqtt += f[1]

    def close(self):
        self.sock.close()


class WebSocketFraming(ServerTestCase):
    def ws(self, server, **kwargs):
        ws = RawWebSocket(server.ws_port, **kwargs)
        self.addCleanup(ws.close)
        return ws

    def test_mqtt_packet_split_across_frames_and_batched_in_one(self):
        server = self.start_server()
        ws = self.ws(server)
        data = connect_packet("ws-frag", V311)
        # CONNECT split over a first fragment and a continuation frame ...
        ws.send(ws.frame(data[:5], opcode=2, fin=False) + ws.frame(data[5:], opcode=0))
        self.assertEqual(ws.recv_packet().type, CONNACK)
        # ... then SUBSCRIBE + PUBLISH in one frame, and a PUBLISH split mid-header
        # over two separate binary messages.
        ws.send(ws.frame(subscribe_packet(1, [("ws/frag", 0)]) + publish_packet("ws/frag", b"a")))
        pub = publish_packet("ws/frag", b"b" * 300)
        ws.send(ws.frame(pub[:1]))
        ws.send(ws.frame(pub[1:]))
        got = [ws.recv_packet() for _ in range(3)]
        self.assertEqual([p.type for p in got], [SUBACK, PUBLISH, PUBLISH])
        self.assertEqual([p.payload for p in got[1:]], [b"a", b"b" * 300])

    def test_ping_answered_with_pong_between_mqtt_packets(self):
        server = self.start_server()
        ws = self.ws(server)
        ws.send(ws.frame(connect_packet("ws-ping", V311)))
        self.assertEqual(ws.recv_packet().type, CONNACK)
        ws.send(ws.frame(b"hello", opcode=9))
        self.assertEqual(ws.recv_frame(), (10, b"hello"))
        ws.send(ws.frame(packet(12, 0, b"")))
        self.assertEqual(ws.recv_packet().type, PINGRESP)

    def test_protocol_violations_close_the_websocket(self):
        server = self.start_server()
        for why, data, code in (("unmasked", dict(masked=False), 1002),
                                ("text frame", dict(opcode=1), 1003)):
            with self.subTest(why=why):
                ws = self.ws(server)
                ws.send(ws.frame(connect_packet("ws-bad", V311), **data))
                f = ws.recv_frame()
                self.assertIsNotNone(f, "a close frame first")
                self.assertEqual(f[0], 8)
                self.assertEqual(struct.unpack("!H", f[1][:2])[0], code)
                self.assertIsNone(ws.recv_frame(), "then the connection closes")
        self.assertServerAlive(server)

    def test_stalled_websocket_reader_bounded_and_intact(self):
        server = self.start_server()
        ws = self.ws(server, rcvbuf=16384)
        ws.send(ws.frame(connect_packet("ws-stalled", V311) +
                         subscribe_packet(1, [("wsflood", 0)])))
        self.assertEqual(ws.recv_packet().type, CONNACK)
        self.assertEqual(ws.recv_packet().type, SUBACK)
        chunk = bytes(range(256)) * 300
        from harness import PUBACK, RawClient
        with RawClient(server, version=V311) as pub:
            pub.connect("ws-flooder")
            for i in range(300):
                pub.publish("wsflood", chunk, qos=1, packet_id=i + 1)
            for _ in range(300):
                pub.expect(PUBACK)
        server.wait_metric("counterlink_mqtt_messages_dropped_total", {"reason": "slow_consumer"})
        ws.sock.settimeout(1.0)
        kept = 0
        try:
            while True:
                p = ws.recv_packet()
                self.assertEqual((p.type, p.payload), (PUBLISH, chunk), "intact messages")
                kept += 1
        except socket.timeout:
            pass
        self.assertGreater(kept, 0)
        self.assertLess(kept, 300)
        ws.sock.settimeout(10)
        mosquitto_pub(server, "-t", "wsflood", "-m", "after")
        self.assertEqual(ws.recv_packet().payload, b"after")

    def test_websocket_close_without_disconnect_publishes_will(self):
        server = self.start_server()
        with PahoClient(server, "ws-close-watch") as watcher:
            watcher.subscribe("ws/closed", 1)
            ws = self.ws(server)
            ws.send(ws.frame(connect_packet("ws-closer", V311,
                                            will={"topic": "ws/closed", "payload": b"w"})))
            self.assertEqual(ws.recv_packet().type, CONNACK)
            ws.send(ws.frame(struct.pack("!H", 1000), opcode=8))
            f = ws.recv_frame()
            self.assertEqual(f[0] if f else None, 8, "the server answers the close")
            self.assertEqual(watcher.wait_messages(1)[0].payload, b"w")


class WebSocket(ServerTestCase):
    def test_websocket_publisher_reaches_tcp_subscriber(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                topic = f"ws/to-tcp/{version}"
                with MosquittoSub(server, "-t", topic, "-q", "1", version=version) as sub, \
                        PahoClient(server, f"ws-pub-{version}", protocol=version,
                                   transport="websockets") as ws:
                    ws.publish(topic, b"over websocket", qos=1)
                    self.assertEqual(sub.wait_messages(1)[0][:3], (topic, b"over websocket", 1))

    def test_tcp_publisher_reaches_websocket_subscriber(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                topic = f"tcp/to-ws/{version}"
                with PahoClient(server, f"ws-sub-{version}", protocol=version,
                                transport="websockets") as ws:
                    self.assertEqual(ws.subscribe(topic, 2), [2])
                    mosquitto_pub(server, "-t", topic, "-m", "over tcp", "-q", "2",
                                  version=version)
                    msg = ws.wait_messages(1)[0]
                    self.assertEqual((msg.payload, msg.qos), (b"over tcp", 2))

    def test_large_message_over_websocket_both_ways(self):
        server = self.start_server()
        payload = bytes(range(256)) * 400  # 100 KiB: several frames' worth
        with PahoClient(server, "ws-big", transport="websockets") as ws, \
                PahoClient(server, "tcp-big") as tcp:
            ws.subscribe("big/from-tcp", 1)
            tcp.subscribe("big/from-ws", 1)
            ws.publish("big/from-ws", payload, qos=1)
            tcp.publish("big/from-tcp", payload, qos=1)
            self.assertEqual(tcp.wait_messages(1)[0].payload, payload)
            self.assertEqual(ws.wait_messages(1)[0].payload, payload)

    def test_wrong_path_refused(self):
        server = self.start_server()
        response = http_upgrade(server.ws_port, "/not-mqtt")
        self.assertRegex(response.split("\r\n", 1)[0], r"^HTTP/1\.1 404")
        ok = http_upgrade(server.ws_port, "/mqtt")
        self.assertRegex(ok.split("\r\n", 1)[0], r"^HTTP/1\.1 101")
        self.assertIn("sec-websocket-protocol: mqtt", ok.lower())
        c = PahoClient(server, "ws-wrong-path", transport="websockets", ws_path="/wrong",
                       connect=False)
        self.addCleanup(c.close)
        with self.assertRaises((OSError, ValueError, AssertionError)):
            c.connect()
        self.assertServerAlive(server)

    def test_upgrade_without_mqtt_subprotocol_refused(self):
        server = self.start_server()
        response = http_upgrade(server.ws_port, "/mqtt", protocol="chat")
        self.assertRegex(response.split("\r\n", 1)[0], r"^HTTP/1\.1 400")

    def test_websocket_will_on_abrupt_close(self):
        server = self.start_server()
        with PahoClient(server, "ws-will-watch") as watcher:
            watcher.subscribe("ws/will", 1)
            c = PahoClient(server, "ws-doomed", transport="websockets",
                           will={"topic": "ws/will", "payload": b"ws-gone", "qos": 1})
            c.drop()
            self.assertEqual(watcher.wait_messages(1)[0].payload, b"ws-gone")


if __name__ == "__main__":
    unittest.main()
