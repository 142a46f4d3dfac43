"""Static access rules: users, anonymous clients, %u/%c, the default."""
import unittest

from harness import (V311, V5, PUBACK, MosquittoSub, PahoClient, RawClient, ServerTestCase,
                     mosquitto_pub)


def rules(*rules_):
    """Rules as --set settings: rules({"effect": "deny", "topic": "x/#"}, ...)."""
    settings = {}
    for i, rule in enumerate(rules_):
        for key, value in rule.items():
            settings[f"gateway.acl.{i}.{key}"] = value
    return settings


USERS = {
    "gateway.users.0.username": "alice", "gateway.users.0.password": "a-pw",
    "gateway.users.1.username": "bob", "gateway.users.1.password": "b-pw",
}


class StaticAcl(ServerTestCase):
    def test_denied_subscription_refused_in_suback(self):
        server = self.start_server(settings=rules(
            {"effect": "deny", "action": "subscribe", "topic": "secret/#"}))
        for version, code in ((V311, 128), (V5, 135)):
            with self.subTest(version=version):
                with MosquittoSub(server, "-t", "secret/plans", "-t", "public/news",
                                  version=version) as sub:
                    sub.wait_output("Subscribed")
                    self.assertRegex(sub.output, rf"Subscribed \(mid: \d+\): {code}, 0")
                with RawClient(server, version=version) as raw:
                    raw.connect(f"acl-sub-{version}")
                    # Also a filter that merely overlaps the denied one.
                    self.assertEqual(raw.subscribe([("secret/x", 0), ("#", 0), ("ok", 1)]).reasons,
                                     [code, code, 1])
        self.assertGreaterEqual(server.metric("counterlink_mqtt_authorization_denied_total",
                                              {"action": "subscribe"}), 6)

    def test_subscription_partially_overlapping_denied_filter_refused(self):
        # "+/plans" matches "secret/plans": granting it would leak what the
        # deny rule protects.
        server = self.start_server(settings=rules(
            {"effect": "deny", "action": "subscribe", "topic": "secret/#"}))
        with PahoClient(server, "overlapper") as c:
            self.assertEqual(c.subscribe("+/plans", 1), [0x87])
            self.assertEqual(c.subscribe("+/+/x", 1), [0x87])
            self.assertEqual(c.subscribe("secret", 1), [0x87])  # "secret/#" matches "secret"
            # No overlap: granted.
            self.assertEqual(c.subscribe("public/+", 1), [1])
            self.assertEqual(c.subscribe("+/plans/x/y", 1), [0x87])
            self.assertEqual(c.subscribe("secrets/+", 1), [1])
            self.assertEqual(c.subscribe("$SYS/#", 1), [1])
            mosquitto_pub(server, "-t", "secret/plans", "-m", "leak?", "-q", "1")
            mosquitto_pub(server, "-t", "public/news", "-m", "fine", "-q", "1")
            self.assertEqual([m.payload for m in c.wait_messages(1)], [b"fine"])
            c.assert_no_message(after=1)

    def test_denied_publish_acknowledged_but_not_delivered(self):
        server = self.start_server(settings=rules(
            {"effect": "deny", "action": "publish", "topic": "readonly/#"}))
        with PahoClient(server, "acl-watcher") as watcher:
            watcher.subscribe("readonly/#", 1)
            # 3.1.1: PUBACK (success) but the message goes nowhere.
            proc = mosquitto_pub(server, "-d", "-t", "readonly/x", "-m", "nope", "-q", "1",
                                 version=V311)
            self.assertIn("received PUBACK", proc.stdout + proc.stderr)
            # 5.0: PUBACK 0x87 Not authorized.
            proc = mosquitto_pub(server, "-d", "-t", "readonly/x", "-m", "nope", "-q", "1",
                                 version=V5, check=False)
            self.assertIn("RC:135", proc.stdout + proc.stderr)
            with RawClient(server, version=V5) as raw:
                raw.connect("acl-pub-5")
                raw.publish("readonly/y", b"nope", qos=1, packet_id=4)
                ack = raw.expect(PUBACK)
                self.assertEqual((ack.packet_id, ack.reason), (4, 0x87))
                raw.publish("readonly/y", b"nope", qos=2, packet_id=5)
                from harness import PUBREC
                self.assertEqual(raw.expect(PUBREC).reason, 0x87)
            watcher.assert_no_message()
            # Other topics are still allowed.
            mosquitto_pub(server, "-t", "other", "-m", "fine", "-q", "1")
        self.assertGreaterEqual(server.metric("counterlink_mqtt_authorization_denied_total",
                                              {"action": "publish"}), 3)

    def test_rules_by_username_and_anonymous(self):
        settings = dict(USERS)
        settings.update(rules(
            {"effect": "allow", "username": "alice", "topic": "alice-only/#"},
            {"effect": "deny", "topic": "alice-only/#"},
            {"effect": "deny", "anonymous": True, "action": "publish", "topic": "#"},
        ))
        server = self.start_server(settings=settings)
        with PahoClient(server, "alice-c", username="alice", password="a-pw") as alice, \
                PahoClient(server, "bob-c", username="bob", password="b-pw") as bob, \
                PahoClient(server, "anon-c") as anon:
            self.assertEqual(alice.subscribe("alice-only/#", 1), [1])
            self.assertEqual(bob.subscribe("alice-only/#", 1), [0x87])
            self.assertEqual(anon.subscribe("alice-only/x", 1), [0x87])
            self.assertEqual(anon.subscribe("open/#", 1), [1])
            # Anonymous clients may not publish anywhere; users may.
            with RawClient(server, version=V5) as raw:
                raw.connect("anon-pub")
                raw.publish("open/a", b"x", qos=1, packet_id=1)
                self.assertEqual(raw.expect(PUBACK).reason, 0x87)
            bob.publish("open/b", b"from-bob", qos=1)
            self.assertEqual([m.payload for m in anon.wait_messages(1)], [b"from-bob"])
            alice.publish("alice-only/n", b"note", qos=1)
            self.assertEqual(alice.wait_messages(1)[0].payload, b"note")
            anon.assert_no_message(after=1)

    def test_username_and_client_id_substitution(self):
        settings = dict(USERS)
        settings.update(rules(
            {"effect": "allow", "topic": "users/%u/#"},
            {"effect": "allow", "topic": "devices/%c/#"},
        ))
        settings["gateway.acl_default"] = "deny"
        server = self.start_server(settings=settings)
        with PahoClient(server, "dev-1", username="alice", password="a-pw") as c:
            self.assertEqual(c.subscribe("users/alice/#", 1), [1])
            self.assertEqual(c.subscribe("users/bob/#", 1), [0x87])
            self.assertEqual(c.subscribe("devices/dev-1/cmd", 1), [1])
            self.assertEqual(c.subscribe("devices/dev-2/cmd", 1), [0x87])
            self.assertEqual(c.subscribe("devices/+/cmd", 1), [0x87])
            c.publish("devices/dev-1/cmd", b"mine", qos=1)
            self.assertEqual(c.wait_messages(1)[0].payload, b"mine")
        # An anonymous client has no %u: the users rule never matches it.
        with PahoClient(server, "anon-dev") as c:
            self.assertEqual(c.subscribe("users/alice/#", 1), [0x87])
            self.assertEqual(c.subscribe("devices/anon-dev/#", 1), [1])

    def test_acl_default_deny(self):
        server = self.start_server(settings={"gateway.acl_default": "deny",
                                             **rules({"effect": "allow", "topic": "allowed/#"})})
        with MosquittoSub(server, "-t", "anything", version=V311) as sub:
            self.assertRegex(sub.output, r"Subscribed \(mid: \d+\): 128")
        with PahoClient(server, "deny-default") as c:
            self.assertEqual(c.subscribe("anything/else", 1), [0x87])
            self.assertEqual(c.subscribe("allowed/x", 1), [1])
            c.publish("allowed/x", b"ok", qos=1)
            c.wait_messages(1)
            with RawClient(server, version=V5) as raw:
                raw.connect("deny-pub")
                raw.publish("anything", b"x", qos=1, packet_id=1)
                self.assertEqual(raw.expect(PUBACK).reason, 0x87)

    def test_will_to_denied_topic_not_published(self):
        server = self.start_server(settings=rules(
            {"effect": "deny", "action": "publish", "topic": "forbidden/#"}))
        with PahoClient(server, "will-watch") as watcher:
            watcher.subscribe("forbidden/#", 1)
            raw = RawClient(server, version=V311)
            raw.connect("sneaky", will={"topic": "forbidden/will", "payload": b"x"})
            raw.abort()
            watcher.assert_no_message()


if __name__ == "__main__":
    unittest.main()
