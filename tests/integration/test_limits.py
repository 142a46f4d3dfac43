"""Configured limits, each with its metric."""
import socket
import time
import unittest

from harness import (HOST, V311, V5, PUBACK, PUBLISH, P_SESSION_EXPIRY, PahoClient, RawClient,
                     ServerTestCase, mosquitto_pub, wait_until)


def limit(server, name):
    return server.metric("counterlink_mqtt_limit_hits_total", {"limit": name})


class Limits(ServerTestCase):
    def test_max_connections_closes_the_extra_connection(self):
        server = self.start_server(settings={"gateway.max_connections": 2})
        a = RawClient(server, version=V311)
        b = RawClient(server, version=V311)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.connect("first")
        b.connect("second")
        with RawClient(server, version=V311) as extra:
            try:
                extra.send(b"\x10")  # may already be closed
            except OSError:
                pass
            self.assertEqual(extra.expect_closed(), [])
        self.assertGreaterEqual(limit(server, "max_connections"), 1)
        # The two admitted clients still work, and a slot frees on close.
        a.subscribe([("mc/t", 1)])
        b.publish("mc/t", b"x", qos=1, packet_id=1)
        self.assertEqual(a.expect(PUBLISH).payload, b"x")
        b.disconnect()
        wait_until(lambda: server.metric("counterlink_mqtt_connections") == 1,
                   message="one connection")
        with RawClient(server, version=V311) as c:
            c.connect("third")

    def test_max_packet_size_counted(self):
        server = self.start_server(settings={"gateway.max_packet_size": 128})
        before = limit(server, "max_packet_size")
        proc = mosquitto_pub(server, "-t", "big", "-m", "x" * 500, "-q", "1", "-d", check=False)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        server.wait_metric("counterlink_mqtt_limit_hits_total", {"limit": "max_packet_size"},
                           at_least=before + 1)

    def test_max_inflight_window(self):
        server = self.start_server(settings={"gateway.max_inflight": 2})
        raw = RawClient(server, version=V311)
        self.addCleanup(raw.close)
        raw.connect("window")
        raw.subscribe([("win/t", 1)])
        with PahoClient(server, "win-pub") as pub:
            for i in range(5):
                pub.publish("win/t", str(i).encode(), qos=1)
        got = [raw.expect(PUBLISH), raw.expect(PUBLISH)]
        raw.assert_silent()  # the window is full
        self.assertGreaterEqual(limit(server, "max_inflight"), 3)
        for _ in range(3):
            raw.ack(PUBACK, got[-2].packet_id)
            got.append(raw.expect(PUBLISH))
        self.assertEqual([p.payload for p in got], [b"0", b"1", b"2", b"3", b"4"])
        self.assertEqual(len({p.packet_id for p in got}), 5)

    def _queue_test(self, overflow):
        server = self.start_server(settings={"gateway.max_queued_messages": 3,
                                             "gateway.queue_overflow": overflow})
        with RawClient(server, version=V5) as raw:
            raw.connect("queued", properties=[(P_SESSION_EXPIRY, 60)])
            raw.subscribe([("queue/t", 1)])
            raw.disconnect()
        with PahoClient(server, "queue-pub") as pub:
            for i in range(7):
                pub.publish("queue/t", str(i).encode(), qos=1)
        self.assertEqual(server.metric("counterlink_mqtt_messages_dropped_total",
                                       {"reason": "queue_full"}), 4)
        self.assertGreaterEqual(limit(server, "max_queued_messages"), 4)
        with RawClient(server, version=V5) as raw:
            raw.connect("queued", clean=False, properties=[(P_SESSION_EXPIRY, 60)])
            got = []
            for _ in range(3):
                p = raw.expect(PUBLISH)
                raw.ack(PUBACK, p.packet_id)
                got.append(p.payload)
            raw.assert_silent()
        return got

    def test_max_queued_messages_drop_oldest_keeps_newest(self):
        self.assertEqual(self._queue_test("drop_oldest"), [b"4", b"5", b"6"])

    def test_max_queued_messages_drop_newest_keeps_oldest(self):
        self.assertEqual(self._queue_test("drop_newest"), [b"0", b"1", b"2"])

    def test_qos0_not_queued_for_offline_session_unless_configured(self):
        for queue_qos0, expected in ((False, [b"q1"]), (True, [b"q0", b"q1"])):
            with self.subTest(queue_qos0=queue_qos0):
                server = self.start_server(settings={"gateway.queue_qos0": queue_qos0})
                with RawClient(server, version=V311) as raw:
                    raw.connect("q0", clean=False)
                    raw.subscribe([("q0/t", 1)])
                    raw.disconnect()
                wait_until(lambda: server.metric("counterlink_mqtt_connections") == 0,
                           message="reader offline")
                mosquitto_pub(server, "-t", "q0/t", "-m", "q0", "-q", "0")
                mosquitto_pub(server, "-t", "q0/t", "-m", "q1", "-q", "1")
                with RawClient(server, version=V311) as raw:
                    raw.connect("q0", clean=False)
                    got = []
                    for _ in expected:
                        p = raw.expect(PUBLISH)
                        if p.qos:
                            raw.ack(PUBACK, p.packet_id)
                        got.append(p.payload)
                    raw.assert_silent(0.3)
                    self.assertEqual(got, expected)

    def test_slow_consumer_drops_qos0_and_recovers(self):
        server = self.start_server()
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        stalled.settimeout(10)
        stalled.connect((HOST, server.port))
        self.addCleanup(stalled.close)
        from harness import connect_packet, subscribe_packet
        stalled.sendall(connect_packet("stalled", V311) + subscribe_packet(1, [("flood/t", 0)]))
        server.wait_subscriptions(1)
        with PahoClient(server, "healthy") as healthy:
            healthy.subscribe("flood/t", 1)  # QoS 1 is bounded by the window, never dropped
            chunk = b"z" * 100_000
            with RawClient(server, version=V311) as pub:
                pub.connect("flooder")
                for i in range(300):  # 30 MB while "stalled" reads nothing
                    pub.publish("flood/t", chunk, qos=1, packet_id=i + 1)
                for _ in range(300):
                    pub.expect(PUBACK)
            self.assertEqual(len(healthy.wait_messages(300, timeout=60)), 300)
        server.wait_metric("counterlink_mqtt_messages_dropped_total", {"reason": "slow_consumer"})
        # The stalled client drains what was kept (bounded), then gets new messages.
        received = 0
        stalled.settimeout(1.0)
        try:
            while True:
                part = stalled.recv(1 << 20)
                self.assertTrue(part, "closed")
                received += len(part)
        except socket.timeout:
            pass
        self.assertGreater(received, 0)
        self.assertLess(received, 300 * 100_000)
        mosquitto_pub(server, "-t", "flood/t", "-m", "after-the-flood")
        stalled.settimeout(10)
        data = b""
        while not data.endswith(b"after-the-flood"):
            part = stalled.recv(4096)
            self.assertTrue(part, "closed")
            data += part

    def test_connect_timeout_closes_idle_socket(self):
        server = self.start_server(settings={"gateway.connect_timeout_ms": 300})
        start = time.monotonic()
        with socket.create_connection((HOST, server.port), timeout=10) as idle:
            idle.settimeout(6)
            self.assertEqual(idle.recv(16), b"", "closed without any packet")
        self.assertGreaterEqual(time.monotonic() - start, 0.25)
        self.assertGreaterEqual(limit(server, "connect_timeout"), 1)
        # A client that does send CONNECT in time is unaffected.
        with RawClient(server, version=V311) as raw:
            raw.connect("in-time")
            time.sleep(1.5)
            raw.subscribe([("ct/t", 0)])

    def test_partial_connect_also_times_out(self):
        server = self.start_server(settings={"gateway.connect_timeout_ms": 300})
        with RawClient(server, version=V311) as raw:
            raw.send(b"\x10\x20\x00\x04MQ")  # a CONNECT that never completes
            self.assertEqual(raw.expect_closed(timeout=6), [])
        self.assertGreaterEqual(limit(server, "connect_timeout"), 1)


if __name__ == "__main__":
    unittest.main()
