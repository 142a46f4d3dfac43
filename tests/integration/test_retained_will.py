"""Retained messages, wills and keep alive."""
import time
import unittest

from harness import (V311, V5, DISCONNECT, P_SERVER_KEEP_ALIVE, P_SESSION_EXPIRY, P_WILL_DELAY,
                     MosquittoSub, PahoClient, RawClient, ServerTestCase, SubscribeOptions,
                     mosquitto_pub, wait_until)


class Retained(ServerTestCase):
    def test_retained_message_delivered_to_new_subscribers_with_retain_flag(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                topic = f"retained/{version}/x"
                mosquitto_pub(server, "-t", topic, "-m", "last-known", "-r", "-q", "1",
                              version=version)
                with MosquittoSub(server, "-t", f"retained/{version}/#", "-q", "1",
                                  version=version) as sub:
                    got = sub.wait_messages(1)
                    self.assertEqual([m[0] for m in got], [topic])
                    self.assertEqual(got[0][1], b"last-known")
                    self.assertTrue(got[0][3], "RETAIN=1 on a retained message for a new subscription")
                    # A message published live to an existing subscriber has RETAIN=0
                    # (and the retained one is replaced).
                    n = len(sub.messages)
                    mosquitto_pub(server, "-t", topic, "-m", "newer", "-r", "-q", "1",
                                  version=version)
                    live = sub.wait_messages(n + 1)[n]
                    self.assertEqual((live[1], live[3]), (b"newer", False))
                with MosquittoSub(server, "-t", topic, version=version) as sub:
                    self.assertEqual(sub.wait_messages(1)[0][1], b"newer")
        self.assertEqual(server.metric("counterlink_mqtt_retained_messages"), 2)

    def test_empty_retained_payload_clears_it(self):
        server = self.start_server()
        mosquitto_pub(server, "-t", "clear/me", "-m", "soon-gone", "-r")
        server.wait_metric("counterlink_mqtt_retained_messages", at_least=1)
        mosquitto_pub(server, "-t", "clear/me", "-n", "-r")
        wait_until(lambda: server.metric("counterlink_mqtt_retained_messages") == 0,
                   message="retained store empty")
        with PahoClient(server, "after-clear") as c:
            c.subscribe("clear/#", 1)
            c.assert_no_message()

    def test_retain_handling_options(self):
        server = self.start_server()
        mosquitto_pub(server, "-t", "rh/t", "-m", "kept", "-r", "-q", "1")
        with PahoClient(server, "rh0") as c:
            c.subscribe("rh/t", options=SubscribeOptions(qos=1, retainHandling=0))
            self.assertEqual(c.wait_messages(1)[0].payload, b"kept")
            # 0: sent again on every subscribe, even to an existing subscription.
            c.subscribe("rh/t", options=SubscribeOptions(qos=1, retainHandling=0))
            self.assertTrue(c.wait_messages(2)[1].retain)
        with PahoClient(server, "rh1") as c:
            c.subscribe("rh/t", options=SubscribeOptions(qos=1, retainHandling=1))
            self.assertEqual(c.wait_messages(1)[0].payload, b"kept")
            # 1: only for a new subscription, not for a repeated one.
            c.subscribe("rh/t", options=SubscribeOptions(qos=1, retainHandling=1))
            c.assert_no_message(after=1)
        with PahoClient(server, "rh2") as c:
            c.subscribe("rh/t", options=SubscribeOptions(qos=1, retainHandling=2))
            c.assert_no_message()  # 2: never
            mosquitto_pub(server, "-t", "rh/t", "-m", "live", "-q", "1")
            self.assertEqual(c.wait_messages(1)[0].payload, b"live")

    def test_retain_as_published(self):
        server = self.start_server()
        with PahoClient(server, "rap-on") as on, PahoClient(server, "rap-off") as off:
            on.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=True))
            off.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=False))
            mosquitto_pub(server, "-t", "rap/t", "-m", "r", "-r", "-q", "1", version=V5)
            mosquitto_pub(server, "-t", "rap/t", "-m", "n", "-q", "1", version=V5)
            self.assertEqual([(m.payload, m.retain) for m in on.wait_messages(2)],
                             [(b"r", True), (b"n", False)])
            self.assertEqual([(m.payload, m.retain) for m in off.wait_messages(2)],
                             [(b"r", False), (b"n", False)])

    def test_retained_qos_is_min_of_message_and_subscription(self):
        server = self.start_server()
        mosquitto_pub(server, "-t", "rq/t", "-m", "q2", "-r", "-q", "2")
        with MosquittoSub(server, "-t", "rq/t", "-q", "1") as sub:
            self.assertEqual(sub.wait_messages(1)[0][2], 1)


class Wills(ServerTestCase):
    def will_sub(self, server, topic="will/#", version=V311):
        sub = MosquittoSub(server, "-t", topic, "-q", "1", version=version)
        self.addCleanup(sub.stop)
        return sub

    def test_will_published_when_client_process_is_killed(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                watcher = self.will_sub(server, f"will/killed/{version}")
                doomed = MosquittoSub(server, "-t", "whatever", "-i", f"doomed-{version}",
                                      "--will-topic", f"will/killed/{version}",
                                      "--will-payload", "gone", "--will-qos", "1",
                                      version=version)
                self.addCleanup(doomed.stop)
                doomed.kill()  # SIGKILL: no DISCONNECT
                got = watcher.wait_messages(1)
                self.assertEqual(got[0][:3], (f"will/killed/{version}", b"gone", 1))
        self.assertGreaterEqual(server.metric("counterlink_mqtt_wills_published_total"), 2)

    def test_will_published_when_socket_closes_without_disconnect(self):
        server = self.start_server()
        watcher = self.will_sub(server)
        raw = RawClient(server, version=V311)
        raw.connect("raw-will", will={"topic": "will/raw", "payload": b"bye", "qos": 1})
        raw.abort()
        self.assertEqual(watcher.wait_messages(1)[0][:2], ("will/raw", b"bye"))

    def test_no_will_on_normal_disconnect(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                with PahoClient(server, f"polite-{version}", protocol=version) as watcher:
                    watcher.subscribe("will/polite", 1)
                    c = PahoClient(server, f"leaver-{version}", protocol=version,
                                   will={"topic": "will/polite", "payload": b"should-not"})
                    c.disconnect()
                    watcher.assert_no_message()
        self.assertEqual(server.metric("counterlink_mqtt_wills_published_total"), 0)

    def test_will_published_on_disconnect_with_will_message_reason(self):
        server = self.start_server()
        with PahoClient(server, "watch-04") as watcher:
            watcher.subscribe("will/04", 1)
            c = PahoClient(server, "leaver-04",
                           will={"topic": "will/04", "payload": b"asked-for", "qos": 1})
            c.disconnect(reason=0x04)
            self.assertEqual(watcher.wait_messages(1)[0].payload, b"asked-for")

    def test_will_delay_honoured(self):
        server = self.start_server()
        with PahoClient(server, "watch-delay") as watcher:
            watcher.subscribe("will/delay", 1)
            raw = RawClient(server, version=V5)
            raw.connect("delayed", properties=[(P_SESSION_EXPIRY, 60)],
                        will={"topic": "will/delay", "payload": b"late", "qos": 1,
                              "properties": [(P_WILL_DELAY, 2)]})
            dropped_at = time.monotonic()
            raw.abort()
            watcher.assert_no_message(1.2)  # not before the delay
            msg = watcher.wait_messages(1)[0]
            self.assertGreaterEqual(time.monotonic() - dropped_at, 1.8)
            self.assertEqual(msg.payload, b"late")

    def test_will_delay_cancelled_by_reconnect(self):
        server = self.start_server()
        with PahoClient(server, "watch-cancel") as watcher:
            watcher.subscribe("will/cancel", 1)
            raw = RawClient(server, version=V5)
            will = {"topic": "will/cancel", "payload": b"never", "properties": [(P_WILL_DELAY, 1)]}
            raw.connect("comeback", properties=[(P_SESSION_EXPIRY, 60)], will=will)
            raw.abort()
            with RawClient(server, version=V5) as again:
                connack = again.connect("comeback", clean=False,
                                        properties=[(P_SESSION_EXPIRY, 60)])
                self.assertTrue(connack.session_present)
                watcher.assert_no_message(1.8)  # past the delay: still nothing
                again.disconnect()

    def test_will_delay_ends_with_session_expiry(self):
        # The will goes when the session ends, if that is before the delay.
        server = self.start_server()
        with PahoClient(server, "watch-expiry") as watcher:
            watcher.subscribe("will/expiry", 1)
            raw = RawClient(server, version=V5)
            raw.connect("short-session", properties=[(P_SESSION_EXPIRY, 1)],
                        will={"topic": "will/expiry", "payload": b"x",
                              "properties": [(P_WILL_DELAY, 60)]})
            raw.abort()
            self.assertEqual(watcher.wait_messages(1, timeout=5)[0].payload, b"x")

    def test_will_of_taken_over_connection_published(self):
        server = self.start_server()
        with PahoClient(server, "watch-takeover") as watcher:
            watcher.subscribe("will/takeover", 1)
            first = RawClient(server, version=V5)
            self.addCleanup(first.close)
            first.connect("taken", will={"topic": "will/takeover", "payload": b"replaced"})
            with RawClient(server, version=V5) as second:
                second.connect("taken")
                first.expect_disconnect(0x8E)
                self.assertEqual(watcher.wait_messages(1)[0].payload, b"replaced")
                second.disconnect()
            watcher.assert_no_message(after=1)  # the second one left normally

    def test_will_properties_forwarded(self):
        server = self.start_server()
        with PahoClient(server, "watch-props") as watcher:
            watcher.subscribe("will/props", 1)
            raw = RawClient(server, version=V5)
            from harness import (P_CONTENT_TYPE, P_CORRELATION_DATA, P_RESPONSE_TOPIC,
                                 P_USER_PROPERTY)
            raw.connect("will-props", will={
                "topic": "will/props", "payload": b"{}", "qos": 1,
                "properties": [(P_CONTENT_TYPE, "application/json"),
                               (P_RESPONSE_TOPIC, "reply/here"),
                               (P_CORRELATION_DATA, b"cd"),
                               (P_USER_PROPERTY, ("device", "d-7"))]})
            raw.abort()
            msg = watcher.wait_messages(1)[0]
            self.assertEqual(msg.prop("ContentType"), "application/json")
            self.assertEqual(msg.prop("ResponseTopic"), "reply/here")
            self.assertEqual(msg.prop("CorrelationData"), b"cd")
            self.assertEqual(msg.user_properties, [("device", "d-7")])

    def test_will_retain(self):
        server = self.start_server()
        c = PahoClient(server, "retained-will", protocol=V311,
                       will={"topic": "will/retained", "payload": b"offline", "qos": 1,
                             "retain": True})
        c.drop()
        server.wait_metric("counterlink_mqtt_wills_published_total")
        with MosquittoSub(server, "-t", "will/retained", "-q", "1") as sub:
            topic, payload, _, retain = sub.wait_messages(1)[0]
            self.assertEqual((payload, retain), (b"offline", True))


class KeepAlive(ServerTestCase):
    def test_silent_client_closed_after_one_and_a_half_keepalives(self):
        server = self.start_server()
        with PahoClient(server, "ka-watch") as watcher:
            watcher.subscribe("will/ka/#", 1)
            for version in (V311, V5):
                with self.subTest(version=version):
                    raw = RawClient(server, version=version)
                    self.addCleanup(raw.close)
                    raw.connect(f"quiet-{version}", keepalive=1,
                                will={"topic": f"will/ka/{version}", "payload": b"timed-out"})
                    start = time.monotonic()
                    packets = raw.expect_closed(timeout=6)
                    elapsed = time.monotonic() - start
                    self.assertGreaterEqual(elapsed, 1.4)
                    self.assertLess(elapsed, 4.0)
                    if version == V5:
                        self.assertEqual([p.reason for p in packets if p.type == DISCONNECT],
                                         [0x8D], packets)
                    else:
                        self.assertEqual(packets, [])
            got = watcher.wait_messages(2)
            self.assertEqual(sorted(m.topic for m in got), ["will/ka/4", "will/ka/5"])
        self.assertGreaterEqual(server.metric("counterlink_mqtt_disconnects_total",
                                              {"reason": "keepalive_timeout"}), 2)

    def test_pings_keep_the_connection_alive(self):
        server = self.start_server()
        with RawClient(server, version=V311) as raw:
            raw.connect("pinger", keepalive=1)
            from harness import PINGREQ, PINGRESP, packet
            for _ in range(5):  # 2.5 s, well past 1.5 x keep alive
                raw.send(packet(PINGREQ, 0, b""))
                raw.expect(PINGRESP)
                time.sleep(0.5)
            raw.send(packet(PINGREQ, 0, b""))
            raw.expect(PINGRESP)

    def test_server_keep_alive_announced_to_v5_client(self):
        server = self.start_server(settings={"gateway.max_keepalive": 5})
        with RawClient(server, version=V5) as raw:
            self.assertEqual(raw.connect("ka-long", keepalive=60).props.get(P_SERVER_KEEP_ALIVE), 5)
        with RawClient(server, version=V5) as raw:
            self.assertEqual(raw.connect("ka-zero", keepalive=0).props.get(P_SERVER_KEEP_ALIVE), 5)
        with RawClient(server, version=V5) as raw:
            self.assertNotIn(P_SERVER_KEEP_ALIVE, raw.connect("ka-short", keepalive=3).props)
        with PahoClient(server, "paho-ka", keepalive=120) as c:
            self.assertEqual(c.connack_properties.ServerKeepAlive, 5)


if __name__ == "__main__":
    unittest.main()
