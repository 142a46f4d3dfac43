"""Malformed and out-of-order input from raw sockets: the right reaction, and the
server stays up for everybody else."""
import random
import socket
import struct
import unittest

from harness import (HOST, V31, V311, V5, AUTH, P_SUBSCRIPTION_ID, CONNACK, CONNECT, DISCONNECT, PINGRESP, PUBACK,
                     PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, SUBSCRIBE, UNSUBACK,
                     P_MESSAGE_EXPIRY, P_SESSION_EXPIRY, RawClient, Server, ServerTestCase,
                     connect_packet, mqtt_str, packet, publish_packet, subscribe_packet)


class BadInput(ServerTestCase):
    """One server for the class: each case must leave it serving the next."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()  # asserts a clean exit after all the abuse

    def setUp(self):
        self.assertTrue(self.server.alive, f"server died; log:\n{self.server.log[-4000:]}")

    def tearDown(self):
        self.assertServerAlive(self.server)

    def client(self, version, client_id=None, connect=True):
        raw = RawClient(self.server, version=version)
        self.addCleanup(raw.close)
        if connect:
            raw.connect(client_id or f"bad-{self.id().rsplit('.', 1)[-1][:40]}-{version}")
        return raw

    def reject(self, data, reason, versions=(V311, V5)):
        """Sends `data` (bytes, or a function of the version) after CONNECT:
        5.0 gets DISCONNECT `reason` then the close; 3.1.1 is simply closed."""
        for version in versions:
            with self.subTest(version=version):
                raw = self.client(version)
                raw.send(data(version) if callable(data) else data)
                if version == V5:
                    packets = raw.expect_closed()
                    codes = reason if isinstance(reason, tuple) else (reason,)
                    self.assertEqual(len(packets), 1, packets)
                    self.assertEqual(packets[0].type, DISCONNECT, packets)
                    self.assertIn(packets[0].reason, codes, packets)
                    self.assertTrue(packets[0].reason_string, "a reason string says why")
                else:
                    self.assertEqual(raw.expect_closed(), [])

    # -- fixed header and packet structure ---------------------------------------------

    def test_subscribe_with_reserved_flags_zero_is_malformed(self):
        self.reject(lambda v: subscribe_packet(1, [("a/b", 0)], v, flags=0), 0x81)

    def test_unsubscribe_and_pingreq_with_wrong_flags_are_malformed(self):
        self.reject(lambda v: packet(10, 0, struct.pack("!H", 1) +
                                     (b"\x00" if v == V5 else b"") + mqtt_str("a")), 0x81)
        self.reject(packet(12, 0x1, b""), 0x81)

    def test_publish_qos3_is_malformed(self):
        self.reject(lambda v: bytes([0x36]) + publish_packet("a/b", b"x", 1, 1, version=v)[1:],
                    0x81)

    def test_publish_dup_with_qos0_is_malformed(self):
        self.reject(lambda v: publish_packet("a/b", b"x", 0, dup=True, version=v), 0x81)

    def test_bad_utf8_in_topic_is_malformed(self):
        for bad in (b"a/\xff", b"a/\xc0\xaf", b"a/\xed\xa0\x80", b"a\x00b"):
            with self.subTest(topic=bad):
                self.reject(lambda v: publish_packet(bad, b"x", 0, version=v), 0x81)

    def test_bad_utf8_in_subscription_filter_is_malformed(self):
        self.reject(lambda v: subscribe_packet(1, [(b"a/\xfe", 0)], v), 0x81)

    def test_client_publish_with_subscription_identifier_is_a_protocol_error(self):
        # MQTT-3.3.4-6: only the server puts Subscription Identifiers on PUBLISH.
        self.reject(lambda v: publish_packet("a/b", b"x", 1, 7, version=v,
                                             properties=[(P_SUBSCRIPTION_ID, 5)]),
                    0x82, versions=(V5,))

    def test_property_not_allowed_on_packet_type_is_malformed(self):
        self.reject(publish_packet("a/b", b"x", 0, version=V5,
                                   properties=[(P_SESSION_EXPIRY, 10)]), 0x81, versions=(V5,))

    def test_duplicated_property_is_protocol_error(self):
        self.reject(publish_packet("a/b", b"x", 0, version=V5,
                                   properties=[(P_MESSAGE_EXPIRY, 10), (P_MESSAGE_EXPIRY, 20)]),
                    0x82, versions=(V5,))

    def test_packet_id_zero_is_protocol_error(self):
        self.reject(lambda v: publish_packet("a/b", b"x", 1, packet_id=0, version=v)[:0] +
                    packet(PUBLISH, 0x2, mqtt_str("a/b") + b"\x00\x00" +
                           (b"\x00" if v == V5 else b"") + b"x"), 0x82)

    def test_subscribe_without_filters_is_protocol_error(self):
        self.reject(lambda v: packet(SUBSCRIBE, 0x2, struct.pack("!H", 1) +
                                     (b"\x00" if v == V5 else b"")), 0x82)

    def test_trailing_bytes_are_malformed(self):
        self.reject(lambda v: packet(12, 0, b"\x00"), 0x81)

    # -- packets out of place ---------------------------------------------------------

    def test_second_connect_is_protocol_error(self):
        self.reject(lambda v: connect_packet("again", v), 0x82)

    def test_server_only_packets_from_client_are_protocol_errors(self):
        cases = {
            "CONNACK": lambda v: packet(CONNACK, 0, b"\x00\x00" + (b"\x00" if v == V5 else b"")),
            "SUBACK": lambda v: packet(SUBACK, 0, b"\x00\x01" + (b"\x00" if v == V5 else b"") +
                                       b"\x00"),
            "UNSUBACK": lambda v: packet(UNSUBACK, 0, b"\x00\x01" +
                                         (b"\x00\x00" if v == V5 else b"")),
            "PINGRESP": lambda v: packet(PINGRESP, 0, b""),
        }
        for name, data in cases.items():
            with self.subTest(packet=name):
                self.reject(data, 0x82)

    def test_auth_packet_is_protocol_error(self):
        self.reject(packet(AUTH, 0, b"\x00\x00"), 0x82, versions=(V5,))
        # AUTH does not exist before 5.0: malformed, closed.
        raw = self.client(V311)
        raw.send(packet(AUTH, 0, b""))
        self.assertEqual(raw.expect_closed(), [])

    def test_acks_for_packet_ids_not_in_flight_are_protocol_errors(self):
        for ptype in (PUBACK, PUBREC, PUBCOMP):
            with self.subTest(ack=ptype):
                self.reject(lambda v: packet(ptype, 0, struct.pack("!H", 77)), 0x82)

    def test_pubrel_for_unknown_id_answered_with_pubcomp_0x92(self):
        raw = self.client(V5)
        raw.send(packet(PUBREL, 0x2, struct.pack("!H", 99)))
        comp = raw.expect(PUBCOMP)
        self.assertEqual((comp.packet_id, comp.reason), (99, 0x92))
        # The connection carries on.
        raw.subscribe([("after/pubrel", 0)])
        raw311 = self.client(V311)
        raw311.send(packet(PUBREL, 0x2, struct.pack("!H", 99)))
        self.assertEqual(raw311.expect(PUBCOMP).packet_id, 99)

    def test_puback_for_qos2_message_is_protocol_error(self):
        raw = self.client(V5)
        raw.subscribe([("wrongack/t", 2)])
        raw.publish("wrongack/t", b"x", qos=2, packet_id=1)
        # Our PUBREC and the routed PUBLISH come in either order.
        got = [raw.recv_packet(), raw.recv_packet()]
        self.assertEqual(sorted(p.type for p in got), [PUBLISH, PUBREC], got)
        raw.ack(PUBREL, 1)
        self.assertEqual(raw.expect(PUBCOMP).packet_id, 1)
        pub = [p for p in got if p.type == PUBLISH][0]
        raw.ack(PUBACK, pub.packet_id)  # QoS 2 needs PUBREC, not PUBACK
        raw.expect_disconnect(0x82)

    def test_first_packet_not_connect_is_closed(self):
        for first in (packet(12, 0, b""), publish_packet("a", b"x"),
                      subscribe_packet(1, [("a", 0)])):
            with self.subTest(first=first[:1]):
                raw = self.client(V311, connect=False)
                raw.send(first)
                self.assertEqual(raw.expect_closed(), [])

    # -- CONNECT variants -------------------------------------------------------------

    def raw_connect(self, name, level, flags=0x02, tail=None):
        body = mqtt_str(name) + bytes([level, flags]) + b"\x00\x3c"
        if level == 5:
            body += b"\x00"
        body += tail if tail is not None else mqtt_str("proto-test")
        return packet(CONNECT, 0, body)

    def test_unsupported_protocol_level(self):
        cases = [
            # (name, level, CONNACK the client can read, its return/reason code)
            ("MQTT", 6, V311, 0x01),
            ("MQTT", 2, V311, 0x01),
            ("MQTT", 3, V311, 0x01),     # 3 needs the name MQIsdp
            ("MQIsdp", 4, V311, 0x01),
            ("MQIsdp", 5, V5, 0x84),    # a 5.0 client gets the 5.0 form
        ]
        for name, level, form, code in cases:
            with self.subTest(name=name, level=level):
                raw = RawClient(self.server, version=form)
                self.addCleanup(raw.close)
                raw.send(self.raw_connect(name, level))
                packets = raw.expect_closed()
                self.assertEqual([p.type for p in packets], [CONNACK], packets)
                self.assertEqual(packets[0].reason, code)
                expected_len = 3 if form == V5 else 2
                self.assertGreaterEqual(len(packets[0].body), expected_len)
                if form == V311:
                    self.assertEqual(len(packets[0].body), 2, "3.1.1 CONNACK form")

    def test_connect_with_bad_protocol_name_closed(self):
        raw = self.client(V311, connect=False)
        raw.send(self.raw_connect("HTTP", 4))
        self.assertEqual(raw.expect_closed(), [])

    def test_malformed_connect_flags(self):
        for flags, why in ((0x03, "reserved bit"), (0x12, "will qos without will flag"),
                           (0x1E, "will qos 3")):
            with self.subTest(why=why):
                raw = self.client(V5, connect=False)
                raw.send(self.raw_connect("MQTT", 5, flags))
                packets = raw.expect_closed()
                self.assertEqual([(p.type, p.reason) for p in packets], [(CONNACK, 0x81)], packets)
                raw = self.client(V311, connect=False)
                raw.send(self.raw_connect("MQTT", 4, flags))
                self.assertEqual(raw.expect_closed(), [])

    def test_connect_property_rules(self):
        from harness import P_MAXIMUM_PACKET_SIZE, P_RECEIVE_MAXIMUM, P_TOPIC_ALIAS, P_WILL_DELAY
        cases = [
            ("receive maximum 0", dict(properties=[(P_RECEIVE_MAXIMUM, 0)]), 0x82),
            ("maximum packet size 0", dict(properties=[(P_MAXIMUM_PACKET_SIZE, 0)]), 0x82),
            ("property of another packet", dict(properties=[(P_TOPIC_ALIAS, 1)]), 0x81),
            ("will delay outside the will", dict(properties=[(P_WILL_DELAY, 1)]), 0x81),
            ("wildcard will topic", dict(will={"topic": "w/#", "payload": b"x"}), 0x90),
        ]
        for why, kwargs, code in cases:
            with self.subTest(why=why):
                raw = self.client(V5, connect=False)
                raw.send(connect_packet("props", V5, **kwargs))
                packets = raw.expect_closed()
                self.assertEqual([(p.type, p.reason) for p in packets], [(CONNACK, code)], packets)
                self.assertTrue(packets[0].reason_string)

    def test_password_without_username(self):
        # Allowed in 5.0, malformed in 3.1.1.
        raw = self.client(V5, connect=False)
        raw.send(packet(CONNECT, 0, mqtt_str("MQTT") + bytes([5, 0x42]) + b"\x00\x3c\x00" +
                        mqtt_str("pw-only") + mqtt_str("secret")))
        self.assertEqual(raw.expect(CONNACK).reason, 0)
        raw = self.client(V311, connect=False)
        raw.send(packet(CONNECT, 0, mqtt_str("MQTT") + bytes([4, 0x42]) + b"\x00\x3c" +
                        mqtt_str("pw-only") + mqtt_str("secret")))
        self.assertEqual(raw.expect_closed(), [])

    def test_subscribe_option_errors(self):
        self.reject(lambda v: subscribe_packet(1, [("a", 3)], v), 0x81)       # QoS 3
        self.reject(lambda v: subscribe_packet(1, [("a", 0xC0)], v), 0x81)    # reserved bits
        self.reject(subscribe_packet(1, [("a", 0x30)], V5), 0x82, versions=(V5,))  # RH 3
        self.reject(subscribe_packet(1, [("$share/g/a", 0x04)], V5), 0x82,
                    versions=(V5,))  # No Local on a shared subscription

    def test_publish_property_errors(self):
        from harness import P_TOPIC_ALIAS
        self.reject(publish_packet("", b"x", version=V5), 0x82, versions=(V5,))  # no topic
        # Alias 0 is forbidden (MQTT-3.3.2-8); 0x94 describes "above the
        # maximum", so either Protocol Error or Topic Alias invalid will do.
        self.reject(publish_packet("a", b"x", version=V5,
                                   properties=[(P_TOPIC_ALIAS, 0)]), (0x82, 0x94), versions=(V5,))
        # An unknown property identifier, and a property length beyond the packet.
        self.reject(packet(PUBLISH, 0, mqtt_str("a") + b"\x02\x7f\x00"), 0x81, versions=(V5,))
        self.reject(packet(PUBLISH, 0, mqtt_str("a") + b"\x09\x01\x01"), 0x81, versions=(V5,))

    def test_very_deep_topics_refused_without_crashing(self):
        # ~32k levels fit in a 65535-byte topic. Matching them level by level
        # must not exhaust a worker's stack: deep names and filters are refused.
        deep = 32767
        deep_filter = "/".join(["+"] * deep)
        deep_topic = "/".join(["a"] * deep)
        limit_filter = "deep/" + "/".join(["+"] * 255)  # 256 levels: the most allowed
        limit_topic = "deep/" + "/".join(["a"] * 255)
        for version in (V311, V5):
            with self.subTest(version=version):
                raw = self.client(version)
                suback = raw.subscribe([(deep_filter, 0), ("deep/#", 0), (limit_filter, 0)])
                self.assertEqual(suback.reasons, [0x8F if version == V5 else 0x80, 0, 0])
                raw.publish(limit_topic, b"deep-but-allowed")
                got = raw.recv_packet()
                self.assertEqual((got.topic, got.payload), (limit_topic, b"deep-but-allowed"))
                raw.assert_silent(0.2)  # one copy for the two overlapping filters
        # A retained deep message then a "#" subscription; and the PUBLISH itself.
        self.reject(lambda v: publish_packet(deep_topic, b"x", retain=True, version=v), 0x90)
        self.reject(lambda v: publish_packet(limit_topic + "/a", b"x", version=v), 0x90)
        raw = self.client(V5, connect=False)
        raw.send(connect_packet("deep-will", V5, will={"topic": deep_topic, "payload": b"w"}))
        self.assertEqual([(p.type, p.reason) for p in raw.expect_closed()], [(CONNACK, 0x90)])
        raw = self.client(V311, connect=False)
        raw.send(connect_packet("deep-will", V311, will={"topic": deep_topic, "payload": b"w"}))
        self.assertEqual([(p.type, p.reason) for p in raw.expect_closed()], [(CONNACK, 3)])

    # -- streams ----------------------------------------------------------------------

    def test_truncated_packets_then_close_do_not_hurt(self):
        good = connect_packet("truncated", V311)
        for cut in (1, 2, 5, len(good) - 1):
            with self.subTest(cut=cut):
                with socket.create_connection((HOST, self.server.port), timeout=10) as s:
                    s.sendall(good[:cut])
        raw = self.client(V311)
        raw.send(publish_packet("t/x", b"y" * 50, 1, 1)[:20])
        raw.close()

    def test_remaining_length_over_four_bytes_is_malformed(self):
        for version in (V311, V5):
            raw = self.client(version)
            raw.send(b"\x30\xff\xff\xff\xff\x01")
            packets = raw.expect_closed()
            if version == V5:
                self.assertEqual([(p.type, p.reason) for p in packets], [(DISCONNECT, 0x81)])
        raw = self.client(V311, connect=False)
        raw.send(b"\x10\xff\xff\xff\xff\x01")
        self.assertEqual(raw.expect_closed(), [])

    def test_byte_at_a_time_connect_accepted(self):
        # Several client ids, so that some belong to the worker that accepted
        # the socket (no hand-off) and some to the other one.
        for n in range(8):
            with socket.create_connection((HOST, self.server.port), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                data = connect_packet(f"slowpoke-{n}", V311) + packet(12, 0, b"")
                for i in range(len(data)):
                    s.sendall(data[i:i + 1])
                s.settimeout(10)
                got = b""
                while len(got) < 6:
                    chunk = s.recv(64)
                    self.assertTrue(chunk, f"slowpoke-{n}: closed after {got!r}")
                    got += chunk
                self.assertEqual(got[:6], b"\x20\x02\x00\x00\xd0\x00")

    def test_burst_of_random_garbage_connections(self):
        rng = random.Random(1234)
        for i in range(300):
            try:
                with socket.create_connection((HOST, self.server.port), timeout=5) as s:
                    kind = i % 3
                    if kind == 0:
                        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
                    elif kind == 1:  # a valid CONNECT, then garbage
                        data = connect_packet(f"g{i}", rng.choice((V311, V5))) + \
                            bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 100)))
                    else:  # a CONNECT with random bytes flipped
                        data = bytearray(connect_packet(f"f{i}", rng.choice((V31, V311, V5)),
                                                        will={"topic": "w", "payload": b"p"},
                                                        username="u", password="p"))
                        for _ in range(3):
                            data[rng.randrange(len(data))] = rng.getrandbits(8)
                        data = bytes(data)
                    s.sendall(data)
                    if i % 2:
                        s.shutdown(socket.SHUT_WR)
                        s.settimeout(5)
                        try:
                            while s.recv(4096):
                                pass
                        except (socket.timeout, ConnectionResetError):
                            pass
            except (ConnectionResetError, BrokenPipeError):
                pass
            if i % 100 == 99:
                self.assertTrue(self.server.alive, f"died after {i + 1} garbage connections; "
                                f"log:\n{self.server.log[-4000:]}")


if __name__ == "__main__":
    unittest.main()
