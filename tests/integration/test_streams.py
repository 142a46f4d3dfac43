"""Byte-stream handling and cross-worker routing under realistic traffic:
pipelined packets, large fragmented messages, ordering, many clients."""
import unittest

from harness import (V311, V5, CONNACK, PUBACK, PUBLISH, SUBACK, MosquittoSub, PahoClient,
                     RawClient, ServerTestCase, connect_packet, publish_packet, subscribe_packet)


class Streams(ServerTestCase):
    def test_packets_pipelined_behind_connect_are_processed(self):
        # CONNECT, SUBSCRIBE and PUBLISH in one write. Some client ids belong to
        # the accepting worker, others are handed off to the other worker with
        # the bytes that followed the CONNECT.
        server = self.start_server()
        for version in (V311, V5):
            for n in range(6):
                with self.subTest(version=version, client=n):
                    topic = f"pipe/{version}/{n}"
                    with RawClient(server, version=version) as raw:
                        raw.send(connect_packet(f"pipelined-{version}-{n}", version) +
                                 subscribe_packet(1, [(topic, 1)], version) +
                                 publish_packet(topic, b"self", 1, 2, version=version))
                        self.assertEqual(raw.expect(CONNACK).reason, 0)
                        got = sorted((p.type for p in (raw.recv_packet(), raw.recv_packet(),
                                                       raw.recv_packet())))
                        self.assertEqual(got, [PUBLISH, PUBACK, SUBACK])

    def test_large_messages_cross_workers_intact(self):
        server = self.start_server()
        payload = bytes(i % 251 for i in range(900_000))  # below the 1 MiB default
        with PahoClient(server, "big-a") as a, PahoClient(server, "big-b", protocol=V311) as b:
            a.subscribe("big/t", 1)
            b.subscribe("big/t", 2)
            a.publish("big/t", payload, qos=1, timeout=30)
            self.assertEqual(a.wait_messages(1, timeout=30)[0].payload, payload)
            self.assertEqual(b.wait_messages(1, timeout=30)[0].payload, payload)

    def test_many_messages_arrive_in_order_across_workers(self):
        # A queue large enough for the whole burst: slow (sanitizer-built)
        # runs must not turn this into a test of max_queued_messages.
        server = self.start_server(settings={"gateway.max_queued_messages": 10000})
        count = 2000
        subs = [PahoClient(server, f"order-sub-{i}", protocol=V5 if i % 2 else V311)
                for i in range(4)]
        for s in subs:
            self.addCleanup(s.close)
            s.subscribe("order/t", 1)
        with PahoClient(server, "order-pub") as pub:
            for i in range(count):
                pub.publish("order/t", str(i).encode(), qos=1, wait=False)
            for s in subs:
                got = [int(m.payload) for m in s.wait_messages(count, timeout=60)]
                self.assertEqual(got, list(range(count)), f"{s.client._client_id}")
        self.assertEqual(server.metric("counterlink_mqtt_messages_dropped_total"), 0)

    def test_qos0_flood_to_many_subscribers(self):
        server = self.start_server()
        with MosquittoSub(server, "-t", "flood/#", "-q", "0") as sub0, \
                MosquittoSub(server, "-t", "flood/#", "-q", "0", version=V5) as sub1:
            raw = RawClient(server, version=V311)
            self.addCleanup(raw.close)
            raw.connect("flooder")
            data = b"".join(publish_packet(f"flood/{i % 7}", b"%d" % i) for i in range(1000))
            raw.send(data)
            for s in (sub0, sub1):
                got = s.wait_messages(1000, timeout=30)
                self.assertEqual([int(m[1]) for m in got], list(range(1000)))

    def test_many_concurrent_clients_and_sessions(self):
        server = self.start_server()
        clients = []
        for i in range(40):
            c = PahoClient(server, f"crowd-{i}", protocol=V5 if i % 2 else V311)
            self.addCleanup(c.close)
            c.subscribe(f"crowd/{i}", 1)
            clients.append(c)
        for i, c in enumerate(clients):
            c.publish(f"crowd/{(i + 1) % len(clients)}", f"from {i}".encode(), qos=1, wait=False)
        for i, c in enumerate(clients):
            self.assertEqual(c.wait_messages(1)[0].payload,
                             f"from {(i - 1) % len(clients)}".encode())
        self.assertEqual(server.metric("counterlink_mqtt_connections"), 40)
        self.assertEqual(server.metric("counterlink_mqtt_subscriptions"), 40)


if __name__ == "__main__":
    unittest.main()
