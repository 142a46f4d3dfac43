"""Quality of service: end to end, downgrade, redelivery, flow control."""
import unittest

from harness import (V311, V5, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, P_RECEIVE_MAXIMUM,
                     P_SESSION_EXPIRY, MosquittoSub, PahoClient, RawClient, ServerTestCase,
                     mosquitto_pub)


class EndToEnd(ServerTestCase):
    def test_each_qos_end_to_end_with_mosquitto_clients(self):
        server = self.start_server()
        for version in (V311, V5):
            for qos in (0, 1, 2):
                with self.subTest(version=version, qos=qos):
                    topic = f"qos/{version}/{qos}"
                    with MosquittoSub(server, "-t", topic, "-q", qos, version=version) as sub:
                        mosquitto_pub(server, "-t", topic, "-m", f"m{qos}", "-q", qos,
                                      version=version)
                        topic_got, payload, qos_got, _ = sub.wait_messages(1)[0]
                        self.assertEqual((topic_got, payload, qos_got), (topic, f"m{qos}".encode(), qos))
        for qos in (0, 1, 2):
            self.assertGreaterEqual(
                server.metric("counterlink_mqtt_messages_received_total", {"qos": qos}), 2)
            self.assertGreaterEqual(
                server.metric("counterlink_mqtt_messages_sent_total", {"qos": qos}), 2)

    def test_qos_downgraded_to_subscription_maximum(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                with MosquittoSub(server, "-t", "down/t", "-q", "0", version=version) as q0, \
                        MosquittoSub(server, "-t", "down/t", "-q", "1", version=version) as q1, \
                        MosquittoSub(server, "-t", "down/t", "-q", "2", version=version) as q2:
                    mosquitto_pub(server, "-t", "down/t", "-m", "x", "-q", "2", version=version)
                    self.assertEqual(q0.wait_messages(1)[0][2], 0)
                    self.assertEqual(q1.wait_messages(1)[0][2], 1)
                    self.assertEqual(q2.wait_messages(1)[0][2], 2)
                    # A QoS 1 publish is not upgraded by a QoS 2 subscription.
                    mosquitto_pub(server, "-t", "down/t", "-m", "y", "-q", "1", version=version)
                    self.assertEqual(q2.wait_messages(2)[1][2], 1)

    def test_inbound_qos2_duplicate_is_routed_once(self):
        server = self.start_server()
        with PahoClient(server, "dup-watcher") as watcher:
            watcher.subscribe("dup/t", 2)
            with RawClient(server, version=V311) as raw:
                raw.connect("dup-sender")
                raw.publish("dup/t", b"once", qos=2, packet_id=7)
                self.assertEqual(raw.expect(PUBREC).packet_id, 7)
                # The sender did not see the PUBREC and retransmits with DUP.
                raw.publish("dup/t", b"once", qos=2, packet_id=7, dup=True)
                self.assertEqual(raw.expect(PUBREC).packet_id, 7)
                raw.ack(PUBREL, 7)
                self.assertEqual(raw.expect(PUBCOMP).packet_id, 7)
                # After PUBCOMP the id is free: the same id is a new message.
                raw.publish("dup/t", b"twice", qos=2, packet_id=7)
                raw.expect(PUBREC)
                raw.ack(PUBREL, 7)
                raw.expect(PUBCOMP)
            msgs = watcher.wait_messages(2)
            watcher.assert_no_message(after=2)
            self.assertEqual([m.payload for m in msgs], [b"once", b"twice"])


class Redelivery(ServerTestCase):
    def _persistent(self, server, client_id, version):
        raw = RawClient(server, version=version)
        self.addCleanup(raw.close)
        props = [(P_SESSION_EXPIRY, 60)] if version == V5 else None
        return raw, raw.connect(client_id, clean=False, properties=props)

    def test_redelivers_unacked_qos1_with_dup_after_reconnect(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                cid, topic = f"redeliver-q1-{version}", f"redeliver/q1/{version}"
                raw, _ = self._persistent(server, cid, version)
                raw.subscribe([(topic, 1)])
                mosquitto_pub(server, "-t", topic, "-m", "unacked", "-q", "1")
                first = raw.expect(PUBLISH)
                self.assertEqual((first.qos, first.dup, first.payload), (1, False, b"unacked"))
                raw.close()  # no PUBACK
                raw, connack = self._persistent(server, cid, version)
                self.assertTrue(connack.session_present)
                again = raw.expect(PUBLISH)
                self.assertEqual((again.packet_id, again.dup, again.payload),
                                 (first.packet_id, True, b"unacked"))
                raw.ack(PUBACK, again.packet_id)
                raw.assert_silent()
                # Acknowledged now: a third connection gets nothing again.
                raw.close()
                raw, connack = self._persistent(server, cid, version)
                self.assertTrue(connack.session_present)
                raw.assert_silent()

    def test_redelivers_unacked_qos2_publish_then_pubrel_after_reconnect(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                cid, topic = f"redeliver-q2-{version}", f"redeliver/q2/{version}"
                raw, _ = self._persistent(server, cid, version)
                raw.subscribe([(topic, 2)])
                mosquitto_pub(server, "-t", topic, "-m", "exactly-once", "-q", "2")
                first = raw.expect(PUBLISH)
                self.assertEqual((first.qos, first.dup), (2, False))
                raw.close()  # neither PUBREC
                raw, _ = self._persistent(server, cid, version)
                again = raw.expect(PUBLISH)
                self.assertEqual((again.packet_id, again.dup, again.qos),
                                 (first.packet_id, True, 2))
                raw.ack(PUBREC, again.packet_id)
                rel = raw.expect(PUBREL)
                self.assertEqual(rel.packet_id, first.packet_id)
                self.assertEqual(rel.flags, 0x2)
                raw.close()  # ... nor PUBCOMP
                raw, connack = self._persistent(server, cid, version)
                self.assertTrue(connack.session_present)
                rel = raw.expect(PUBREL)  # not the PUBLISH again
                self.assertEqual(rel.packet_id, first.packet_id)
                raw.ack(PUBCOMP, rel.packet_id)
                raw.assert_silent()


class FlowControl(ServerTestCase):
    def test_client_receive_maximum_limits_messages_in_flight(self):
        server = self.start_server()
        raw = RawClient(server, version=V5)
        self.addCleanup(raw.close)
        raw.connect("slow-reader", properties=[(P_RECEIVE_MAXIMUM, 2)])
        raw.subscribe([("flow/t", 1)])
        with PahoClient(server, "flow-pub") as pub:
            for i in range(3):
                pub.publish("flow/t", f"m{i}".encode(), qos=1)
        first, second = raw.expect(PUBLISH), raw.expect(PUBLISH)
        self.assertEqual([first.payload, second.payload], [b"m0", b"m1"])
        raw.assert_silent()  # the third waits for an acknowledgement
        raw.ack(PUBACK, first.packet_id)
        third = raw.expect(PUBLISH)
        self.assertEqual(third.payload, b"m2")
        self.assertFalse(third.dup)
        raw.assert_silent(0.3)

    def test_qos2_window_slot_freed_by_pubcomp_or_failed_pubrec(self):
        server = self.start_server()
        raw = RawClient(server, version=V5)
        self.addCleanup(raw.close)
        raw.connect("q2-window", properties=[(P_RECEIVE_MAXIMUM, 1)])
        raw.subscribe([("q2w/t", 2)])
        with PahoClient(server, "q2w-pub") as pub:
            for i in range(3):
                pub.publish("q2w/t", f"m{i}".encode(), qos=2)
        first = raw.expect(PUBLISH)
        raw.ack(PUBREC, first.packet_id)
        self.assertEqual(raw.expect(PUBREL).packet_id, first.packet_id)
        raw.assert_silent()  # PUBREC alone does not free the slot
        raw.ack(PUBCOMP, first.packet_id)
        second = raw.expect(PUBLISH)
        self.assertEqual(second.payload, b"m1")
        raw.ack(PUBREC, second.packet_id, reason=0x80)  # refused: the exchange ends here
        third = raw.expect(PUBLISH)
        self.assertEqual(third.payload, b"m2")
        raw.ack(PUBREC, third.packet_id)
        raw.expect(PUBREL)
        raw.ack(PUBCOMP, third.packet_id)
        raw.assert_silent(0.3)

    def test_client_exceeding_our_receive_maximum_is_disconnected(self):
        server = self.start_server(settings={"gateway.receive_maximum": 2})
        raw = RawClient(server, version=V5)
        self.addCleanup(raw.close)
        connack = raw.connect("greedy")
        self.assertEqual(connack.props.get(P_RECEIVE_MAXIMUM), 2)
        for pid in (1, 2):
            raw.publish("rm/t", b"x", qos=2, packet_id=pid)
            self.assertEqual(raw.expect(PUBREC).packet_id, pid)
        raw.publish("rm/t", b"x", qos=2, packet_id=3)  # no PUBREL sent for 1 and 2
        disconnect = raw.expect_disconnect(0x93)
        self.assertTrue(disconnect.reason_string)
        self.assertGreaterEqual(server.metric("counterlink_mqtt_limit_hits_total",
                                              {"limit": "receive_maximum"}), 1)
        self.assertServerAlive(server)

    def test_completed_qos2_frees_receive_window(self):
        server = self.start_server(settings={"gateway.receive_maximum": 2})
        with RawClient(server, version=V5) as raw:
            raw.connect("polite")
            for pid in range(1, 7):  # six messages through a window of two
                raw.publish("rm/ok", b"x", qos=2, packet_id=pid)
                raw.expect(PUBREC)
                raw.ack(PUBREL, pid)
                self.assertEqual(raw.expect(PUBCOMP).reason, 0)
            raw.assert_silent(0.2)


if __name__ == "__main__":
    unittest.main()
