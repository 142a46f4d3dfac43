"""MQTT 5.0 features: no local, subscription identifiers, topic aliases, message
expiry, maximum packet size, forwarded properties, reason codes and strings."""
import time
import unittest

from harness import (V311, V5, PUBACK, PUBLISH, P_MAXIMUM_PACKET_SIZE, P_MESSAGE_EXPIRY,
                     P_SESSION_EXPIRY, P_TOPIC_ALIAS, P_TOPIC_ALIAS_MAXIMUM, MosquittoSub,
                     PahoClient, RawClient, ServerTestCase, SubscribeOptions, mosquitto_pub)


class SubscriptionOptions(ServerTestCase):
    def test_no_local_suppresses_own_messages(self):
        server = self.start_server()
        with PahoClient(server, "self-talker") as me, PahoClient(server, "someone") as other:
            me.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))
            other.subscribe("nl/t", 1)
            me.publish("nl/t", b"mine", qos=1)
            other.publish("nl/t", b"theirs", qos=1)
            self.assertEqual([m.payload for m in me.wait_messages(1)], [b"theirs"])
            self.assertEqual(sorted(m.payload for m in other.wait_messages(2)), [b"mine", b"theirs"])
            me.assert_no_message(after=1)

    def test_without_no_local_own_messages_come_back(self):
        server = self.start_server()
        with PahoClient(server, "echo") as me:
            me.subscribe("echo/t", options=SubscribeOptions(qos=1, noLocal=False))
            me.publish("echo/t", b"back", qos=1)
            self.assertEqual(me.wait_messages(1)[0].payload, b"back")

    def test_subscription_identifier_delivered(self):
        server = self.start_server()
        with PahoClient(server, "subid") as c:
            c.subscribe("sid/a", 1, properties={"SubscriptionIdentifier": 42})
            c.subscribe("sid/b", 1)  # none
            mosquitto_pub(server, "-t", "sid/a", "-m", "a", "-q", "1")
            mosquitto_pub(server, "-t", "sid/b", "-m", "b", "-q", "1")
            a, b = c.wait_messages(2)
            self.assertEqual((a.payload, a.subscription_ids), (b"a", [42]))
            self.assertEqual((b.payload, b.subscription_ids), (b"b", []))

    def test_overlapping_subscriptions_deliver_once_with_both_identifiers(self):
        server = self.start_server()
        with PahoClient(server, "overlap") as c, \
                MosquittoSub(server, "-t", "ov/#", "-t", "ov/+/x", "-q", "1") as old:
            c.subscribe("ov/#", 0, properties={"SubscriptionIdentifier": 1})
            c.subscribe("ov/+/x", 1, properties={"SubscriptionIdentifier": 2})
            mosquitto_pub(server, "-t", "ov/a/x", "-m", "both", "-q", "1")
            msg = c.wait_messages(1)[0]
            c.assert_no_message(after=1)
            self.assertEqual(sorted(msg.subscription_ids), [1, 2])
            self.assertEqual(msg.qos, 1, "the highest QoS of the matching subscriptions")
            # A 3.1.1 client with overlapping subscriptions gets it at least once.
            old.wait_messages(1)


class TopicAliases(ServerTestCase):
    def test_client_topic_alias_resolved(self):
        server = self.start_server()
        with PahoClient(server, "alias-watch") as watcher:
            watcher.subscribe("alias/#", 1)
            with RawClient(server, version=V5) as raw:
                connack = raw.connect("aliaser")
                self.assertEqual(connack.props.get(P_TOPIC_ALIAS_MAXIMUM), 64)
                raw.publish("alias/long/topic", b"set", qos=1, packet_id=1,
                            properties=[(P_TOPIC_ALIAS, 3)])
                raw.expect(PUBACK)
                raw.publish("", b"use", qos=1, packet_id=2, properties=[(P_TOPIC_ALIAS, 3)])
                self.assertEqual(raw.expect(PUBACK).reason, 0)
                # Re-mapping the alias to another topic.
                raw.publish("alias/other", b"remap", qos=0, properties=[(P_TOPIC_ALIAS, 3)])
                raw.publish("", b"use2", qos=0, properties=[(P_TOPIC_ALIAS, 3)])
            got = [(m.topic, m.payload) for m in watcher.wait_messages(4)]
            self.assertEqual(got, [("alias/long/topic", b"set"), ("alias/long/topic", b"use"),
                                   ("alias/other", b"remap"), ("alias/other", b"use2")])

    def test_topic_alias_above_maximum_disconnects_0x94(self):
        server = self.start_server(settings={"gateway.topic_alias_maximum": 2})
        with RawClient(server, version=V5) as raw:
            self.assertEqual(raw.connect("alias-abuser").props.get(P_TOPIC_ALIAS_MAXIMUM), 2)
            raw.publish("a/b", b"x", properties=[(P_TOPIC_ALIAS, 3)])
            self.assertTrue(raw.expect_disconnect(0x94).reason_string)
        self.assertGreaterEqual(server.metric("counterlink_mqtt_limit_hits_total",
                                              {"limit": "topic_alias_maximum"}), 1)

    def test_unknown_topic_alias_is_protocol_error(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("alias-unknown")
            raw.publish("", b"x", properties=[(P_TOPIC_ALIAS, 5)])
            self.assertTrue(raw.expect_disconnect(0x82).reason_string)

    def test_topic_aliases_disabled_with_zero_maximum(self):
        server = self.start_server(settings={"gateway.topic_alias_maximum": 0})
        with RawClient(server, version=V5) as raw:
            self.assertNotIn(P_TOPIC_ALIAS_MAXIMUM, raw.connect("no-alias").props)
            raw.publish("a/b", b"x", properties=[(P_TOPIC_ALIAS, 1)])
            raw.expect_disconnect(0x94)


class MessageExpiry(ServerTestCase):
    def test_queued_message_expires_and_remaining_interval_is_decremented(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("expiry-reader", properties=[(P_SESSION_EXPIRY, 60)])
            raw.subscribe([("mexp/t", 1)])
            raw.disconnect()
        with PahoClient(server, "expiry-pub") as pub:
            pub.publish("mexp/t", b"short", qos=1, properties={"MessageExpiryInterval": 1})
            pub.publish("mexp/t", b"long", qos=1, properties={"MessageExpiryInterval": 30})
        published_at = time.monotonic()
        time.sleep(2.1)  # the first message's lifetime passes while the reader is away
        with RawClient(server, version=V5) as raw:
            self.assertTrue(raw.connect("expiry-reader", clean=False,
                                        properties=[(P_SESSION_EXPIRY, 60)]).session_present)
            msg = raw.expect(PUBLISH)
            waited = time.monotonic() - published_at
            self.assertEqual(msg.payload, b"long", "the expired message is not delivered")
            remaining = msg.props.get(P_MESSAGE_EXPIRY)
            self.assertIsNotNone(remaining, msg)
            self.assertLessEqual(remaining, 30 - int(waited) + 1)
            self.assertLess(remaining, 30)
            self.assertGreater(remaining, 20)
            raw.ack(PUBACK, msg.packet_id)
            raw.assert_silent()
        self.assertGreaterEqual(server.metric("counterlink_mqtt_messages_dropped_total",
                                              {"reason": "expired"}), 1)

    def test_expired_retained_message_not_delivered(self):
        server = self.start_server()
        mosquitto_pub(server, "-t", "mexp/retained", "-m", "stale", "-r", "-D", "publish",
                      "message-expiry-interval", "1", version=V5)
        time.sleep(1.6)
        with PahoClient(server, "late-sub") as c:
            c.subscribe("mexp/retained", 1)
            c.assert_no_message()


class PacketSize(ServerTestCase):
    def test_inbound_packet_above_maximum_disconnects_0x95(self):
        server = self.start_server(settings={"gateway.max_packet_size": 256})
        with RawClient(server, version=V5) as raw:
            self.assertEqual(raw.connect("big-sender").props.get(P_MAXIMUM_PACKET_SIZE), 256)
            raw.publish("size/t", b"x" * 200, qos=0)  # fits
            raw.publish("size/t", b"x" * 1000, qos=0)
            self.assertTrue(raw.expect_disconnect(0x95).reason_string)
        with RawClient(server, version=V311) as raw:
            raw.connect("big-sender-311")
            raw.publish("size/t", b"x" * 1000, qos=1, packet_id=1)
            self.assertEqual(raw.expect_closed(), [])
        self.assertGreaterEqual(server.metric("counterlink_mqtt_limit_hits_total",
                                              {"limit": "max_packet_size"}), 2)
        self.assertServerAlive(server)

    def test_outbound_message_larger_than_client_maximum_not_sent_to_it(self):
        server = self.start_server()
        with RawClient(server, version=V5) as small, PahoClient(server, "big-reader") as big:
            small.connect("small-reader", properties=[(P_MAXIMUM_PACKET_SIZE, 100)])
            small.subscribe([("size/out", 1)])
            big.subscribe("size/out", 1)
            # The same large message once with the cached encoding (no
            # properties) and once with properties that force a fresh one.
            mosquitto_pub(server, "-t", "size/out", "-m", "L" * 500, "-q", "1", version=V5)
            mosquitto_pub(server, "-t", "size/out", "-m", "P" * 500, "-q", "1", version=V5,
                          *[])
            with PahoClient(server, "props-pub") as p:
                p.publish("size/out", b"U" * 500, qos=1,
                          properties={"UserProperty": [("k", "v")]})
            mosquitto_pub(server, "-t", "size/out", "-m", "small", "-q", "1", version=V5)
            self.assertEqual([m.payload[:1] for m in big.wait_messages(4)],
                             [b"L", b"P", b"U", b"s"])
            msg = small.expect(PUBLISH)
            self.assertEqual(msg.payload, b"small", "only the message that fits")
            small.ack(PUBACK, msg.packet_id)
            small.assert_silent(0.3)
        self.assertGreaterEqual(server.metric("counterlink_mqtt_messages_dropped_total",
                                              {"reason": "too_large"}), 3)


class PacketSizeOnReconnect(ServerTestCase):
    def test_unacked_message_too_large_for_new_connection_does_not_block_session(self):
        server = self.start_server()
        raw = RawClient(server, version=V5)
        raw.connect("shrinking", properties=[(P_SESSION_EXPIRY, 60)])
        raw.subscribe([("shrink/t", 1)])
        mosquitto_pub(server, "-t", "shrink/t", "-m", "B" * 500, "-q", "1")
        self.assertEqual(len(raw.expect(PUBLISH).payload), 500)
        raw.close()  # not acknowledged
        from harness import P_RECEIVE_MAXIMUM
        with RawClient(server, version=V5) as again:
            connack = again.connect("shrinking", clean=False, properties=[
                (P_SESSION_EXPIRY, 60), (P_MAXIMUM_PACKET_SIZE, 100), (P_RECEIVE_MAXIMUM, 1)])
            self.assertTrue(connack.session_present)
            mosquitto_pub(server, "-t", "shrink/t", "-m", "small", "-q", "1")
            msg = again.expect(PUBLISH)  # the big one is dropped, not stuck in the window
            self.assertEqual(msg.payload, b"small")
            again.ack(PUBACK, msg.packet_id)
        self.assertGreaterEqual(server.metric("counterlink_mqtt_messages_dropped_total",
                                              {"reason": "too_large"}), 1)


class ForwardedProperties(ServerTestCase):
    def test_user_properties_response_topic_and_correlation_data_forwarded(self):
        server = self.start_server()
        with PahoClient(server, "responder") as responder, PahoClient(server, "requester") as req:
            responder.subscribe("rpc/request", 1)
            req.subscribe("rpc/reply/requester", 1)
            req.publish("rpc/request", b"ping", qos=1, properties={
                "ResponseTopic": "rpc/reply/requester",
                "CorrelationData": b"\x00\x01corr",
                "UserProperty": [("trace", "abc"), ("trace", "def"), ("k", "v")],
                "ContentType": "text/plain",
                "PayloadFormatIndicator": 1,
            })
            request = responder.wait_messages(1)[0]
            self.assertEqual(request.prop("ResponseTopic"), "rpc/reply/requester")
            self.assertEqual(request.prop("CorrelationData"), b"\x00\x01corr")
            self.assertEqual(request.user_properties, [("trace", "abc"), ("trace", "def"),
                                                       ("k", "v")])
            self.assertEqual(request.prop("ContentType"), "text/plain")
            self.assertEqual(request.prop("PayloadFormatIndicator"), 1)
            responder.publish(request.prop("ResponseTopic"), b"pong", qos=1,
                              properties={"CorrelationData": request.prop("CorrelationData")})
            reply = req.wait_messages(1)[0]
            self.assertEqual((reply.payload, reply.prop("CorrelationData")),
                             (b"pong", b"\x00\x01corr"))

    def test_user_properties_with_mosquitto_clients(self):
        server = self.start_server()
        with MosquittoSub(server, "-t", "uprop/t", "-q", "1", version=V5,
                          extra_cmd=["-F", "MSG\t%t\t%q\t%r\t%x\t%P"]) as sub:
            mosquitto_pub(server, "-t", "uprop/t", "-m", "x", "-q", "1", "-D", "publish",
                          "user-property", "site", "paris", version=V5)
            sub.wait_messages(1)
            line = [l for l in sub.lines if l.startswith("MSG\t")][0]
            self.assertIn("site:paris", line)

    def test_invalid_utf8_payload_with_format_indicator_refused_0x99(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("pfi")
            from harness import P_PAYLOAD_FORMAT
            raw.publish("pfi/t", b"\xff\xfe", qos=1, packet_id=9,
                        properties=[(P_PAYLOAD_FORMAT, 1)])
            self.assertEqual(raw.expect(PUBACK).reason, 0x99)


class ReasonCodes(ServerTestCase):
    def test_suback_and_unsuback_reason_codes(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("codes")
            suback = raw.subscribe([("ok/q0", 0), ("ok/q1", 1), ("ok/q2", 2), ("bad/#/x", 1),
                                    ("bad+", 0), ("$share/g", 1), ("$share//t", 1)])
            self.assertEqual(suback.reasons, [0, 1, 2, 0x8F, 0x8F, 0x8F, 0x8F])
            from harness import UNSUBACK, unsubscribe_packet
            raw.send(unsubscribe_packet(2, ["ok/q1", "never/subscribed", "ok/q1"], V5))
            unsuback = raw.expect(UNSUBACK)
            self.assertEqual((unsuback.packet_id, unsuback.reasons), (2, [0, 0x11, 0x11]))
        with RawClient(server, version=V311) as raw:
            raw.connect("codes311")
            self.assertEqual(raw.subscribe([("ok", 2), ("bad/#/x", 1)]).reasons, [2, 0x80])

    def test_maximum_qos_limits_grants(self):
        server = self.start_server(settings={"gateway.maximum_qos": 1})
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("maxqos")
            self.assertEqual(connack.props.get(0x24), 1)
            self.assertEqual(raw.subscribe([("mq/t", 2)]).reasons, [1])
            raw.publish("mq/t", b"x", qos=2, packet_id=1)
            self.assertTrue(raw.expect_disconnect(0x9B).reason_string)

    def test_puback_reason_success_and_reason_string_on_errors(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("rs")
            raw.publish("rs/t", b"x", qos=1, packet_id=3)
            ack = raw.expect(PUBACK)
            self.assertEqual((ack.packet_id, ack.reason), (3, 0))
            raw.publish("rs/+", b"x", qos=1, packet_id=4)  # wildcard in a topic name
            disconnect = raw.expect_disconnect(0x90)
            self.assertIn("wildcard", disconnect.reason_string)


if __name__ == "__main__":
    unittest.main()
