#!/usr/bin/env python3
"""Writes the seed corpus of the MQTT codec fuzz target.

    python3 fuzz/make_seed_corpus.py [OUTPUT_DIR]   (default fuzz/corpus/mqtt_codec)

Each file is one or more MQTT control packets: valid packets of every type in
3.1.1 and 5.0 (the fuzz target decodes every input under 3.1, 3.1.1 and 5.0),
edge cases the decoder must reject, and "filter\\0topic" pairs for the topic
matcher. Regenerate after changing this script and commit the files; the
output is deterministic.
"""

import os
import struct
import sys


def varint(value):
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        if value:
            byte |= 0x80
        out.append(byte)
        if not value:
            return bytes(out)


def u16(value):
    return struct.pack(">H", value)


def u32(value):
    return struct.pack(">I", value)


def string(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return u16(len(value)) + value


def frame(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def props(*items):
    """A property block: Property Length, then the (already encoded) items."""
    body = b"".join(items)
    return varint(len(body)) + body


def p_byte(ident, value):
    return bytes([ident, value])


def p_u16(ident, value):
    return bytes([ident]) + u16(value)


def p_u32(ident, value):
    return bytes([ident]) + u32(value)


def p_str(ident, value):
    return bytes([ident]) + string(value)


def p_varint(ident, value):
    return bytes([ident]) + varint(value)


def p_user(key, value):
    return bytes([0x26]) + string(key) + string(value)


def connect(level, client_id, flags=0x02, keep_alive=60, properties=b"", will=None,
            username=None, password=None):
    name = "MQIsdp" if level == 3 else "MQTT"
    body = string(name) + bytes([level, flags]) + u16(keep_alive)
    if level == 5:
        body += properties or props()
    body += string(client_id)
    if will is not None:
        will_props, topic, payload = will
        if level == 5:
            body += will_props or props()
        body += string(topic) + string(payload)
    if username is not None:
        body += string(username)
    if password is not None:
        body += string(password)
    return frame(0x10, body)


def publish(topic, payload, qos=0, packet_id=1, retain=False, dup=False, properties=None):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos:
        body += u16(packet_id)
    if properties is not None:
        body += properties
    return frame(first, body + payload)


def seeds():
    v5_connect_props = props(p_u32(0x11, 3600), p_u16(0x21, 20), p_u16(0x22, 10),
                             p_u32(0x27, 65536), p_byte(0x17, 1), p_byte(0x19, 1),
                             p_str(0x15, "SCRAM-SHA-1"), p_str(0x16, b"\x00\x01"),
                             p_user("k", "v"))
    v5_will_props = props(p_u32(0x18, 5), p_byte(0x01, 1), p_u32(0x02, 60),
                          p_str(0x03, "text/plain"), p_str(0x08, "reply/here"),
                          p_str(0x09, b"\x01\x02"), p_user("w", "x"))
    v5_publish_props = props(p_byte(0x01, 0), p_u32(0x02, 10), p_str(0x03, "json"),
                             p_str(0x08, "r/t"), p_str(0x09, b"corr"), p_varint(0x0B, 1),
                             p_varint(0x0B, 268435455), p_u16(0x23, 3), p_user("a", "b"))
    v5_connack_props = props(p_u32(0x11, 0), p_str(0x12, "auto-id"), p_u16(0x13, 30),
                             p_str(0x1A, "info"), p_str(0x1C, "other:1883"),
                             p_str(0x1F, "reason"), p_u16(0x21, 100), p_u16(0x22, 5),
                             p_byte(0x24, 1), p_byte(0x25, 1), p_user("x", "y"),
                             p_u32(0x27, 1048576), p_byte(0x28, 1), p_byte(0x29, 0),
                             p_byte(0x2A, 1))
    reason = props(p_str(0x1F, "why"), p_user("k", "v"))

    yield "v311_connect_minimal", connect(4, "a")
    yield "v31_connect_mqisdp", connect(3, "client31", flags=0x00)
    yield "v311_connect_full", connect(4, "c1", flags=0xEE, will=(b"", "w/t", b"bye"),
                                       username="user", password=b"p\x00ss")
    yield "v311_connect_empty_id", connect(4, "", flags=0x02)
    yield "v5_connect_minimal", connect(5, "a")
    yield "v5_connect_full", connect(5, "c5", flags=0xF6, properties=v5_connect_props,
                                     will=(v5_will_props, "last/will", b"\x00gone"),
                                     username="u", password=b"\xff\xfe")
    yield "v5_connect_password_only", connect(5, "p", flags=0x42, password=b"secret")

    yield "v311_connack", frame(0x20, b"\x01\x00")
    yield "v311_connack_refused", frame(0x20, b"\x00\x05")
    yield "v5_connack_minimal", frame(0x20, b"\x00\x00" + props())
    yield "v5_connack_full", frame(0x20, b"\x00\x00" + v5_connack_props)
    yield "v5_connack_refused", frame(0x20, b"\x00\x87" + props(p_str(0x1F, "denied")))

    yield "v311_publish_q0", publish("a/b", b"hello")
    yield "v311_publish_q1", publish("a/b", b"hi", qos=1, packet_id=10)
    yield "v311_publish_q2_retain_dup", publish("$SYS/x", b"", qos=2, packet_id=65535,
                                                retain=True, dup=True)
    yield "v311_publish_long", publish("big", b"x" * 300)
    yield "v5_publish_q0", publish("a/b", b"hello", properties=props())
    yield "v5_publish_q1_props", publish("t", b"{}", qos=1, packet_id=9,
                                         properties=v5_publish_props)
    yield "v5_publish_alias_only", publish("", b"x", properties=props(p_u16(0x23, 1)))

    for name, first in (("puback", 0x40), ("pubrec", 0x50), ("pubrel", 0x62),
                        ("pubcomp", 0x70)):
        yield "v311_" + name, frame(first, u16(7))
        failure = 0x92 if first in (0x62, 0x70) else 0x10
        yield "v5_%s_reason" % name, frame(first, u16(8) + bytes([failure]))
        yield "v5_%s_props" % name, frame(first, u16(9) + bytes([failure]) + reason)

    yield "v311_subscribe", frame(0x82, u16(1) + string("a/+") + b"\x01" + string("#") + b"\x02")
    yield "v5_subscribe", frame(0x82, u16(2) + props(p_varint(0x0B, 77), p_user("s", "t")) +
                                string("$share/g/t") + b"\x2a" + string("n") + b"\x1c")
    yield "v311_suback", frame(0x90, u16(1) + b"\x00\x01\x02\x80")
    yield "v5_suback", frame(0x90, u16(2) + reason + b"\x00\x8f\xa2\x9e")
    yield "v311_unsubscribe", frame(0xA2, u16(3) + string("a/+") + string("#"))
    yield "v5_unsubscribe", frame(0xA2, u16(4) + props(p_user("u", "v")) + string("x"))
    yield "v311_unsuback", frame(0xB0, u16(3))
    yield "v5_unsuback", frame(0xB0, u16(4) + reason + b"\x00\x11\x87")
    yield "pingreq_pingresp", frame(0xC0, b"") + frame(0xD0, b"")
    yield "v311_disconnect", frame(0xE0, b"")
    yield "v5_disconnect_reason", frame(0xE0, b"\x04")
    yield "v5_disconnect_props", frame(0xE0, b"\x9c" + props(p_str(0x1C, "elsewhere"),
                                                             p_u32(0x11, 0),
                                                             p_str(0x1F, "moving")))
    yield "v5_auth", frame(0xF0, b"\x18" + props(p_str(0x15, "SCRAM-SHA-1"),
                                                 p_str(0x16, b"\x00\x00")))
    yield "v5_auth_empty", frame(0xF0, b"")

    # A session's worth of packets back to back.
    yield "v311_session", (connect(4, "s") + frame(0x82, u16(1) + string("s/#") + b"\x01") +
                           publish("s/1", b"1", qos=1, packet_id=2) + frame(0x40, u16(2)) +
                           frame(0xC0, b"") + frame(0xE0, b""))
    yield "v5_session", (connect(5, "s") + publish("s/1", b"1", qos=2, packet_id=3,
                                                   properties=props()) +
                         frame(0x50, u16(3)) + frame(0x62, u16(3)) + frame(0x70, u16(3)) +
                         frame(0xE0, b"\x00" + props()))

    # Edge cases the decoder must reject (the fuzzer mutates from here).
    yield "bad_type0", b"\x00\x00"
    yield "bad_varint_nonminimal", b"\xc0\x80\x00"
    yield "bad_varint_too_long", b"\x30\xff\xff\xff\xff\x7f"
    yield "bad_publish_qos3", frame(0x36, string("a") + u16(1))
    yield "bad_publish_wildcard", publish("a/#", b"x")
    yield "bad_pubrel_flags", frame(0x60, u16(1))
    yield "bad_connect_level", frame(0x10, string("MQTT") + b"\x06\x02" + u16(60) + string("a"))
    yield "bad_utf8_overlong", frame(0x30, u16(2) + b"\xc0\x80")
    yield "bad_utf8_surrogate", frame(0x30, u16(3) + b"\xed\xa0\x80")
    yield "bad_duplicate_property", publish("a", b"", properties=props(p_byte(0x01, 1),
                                                                       p_byte(0x01, 0)))
    yield "bad_subscribe_options", frame(0x82, u16(1) + string("a") + b"\xc3")

    # Topic matcher inputs: "filter\0topic".
    for index, (flt, topic) in enumerate((("sport/#", "sport"), ("+/+", "/finance"),
                                          ("#", "$SYS/x"), ("$share/g/a/+", "a/b"),
                                          ("a/+/c", "a//c"))):
        yield "topic_%d" % index, flt.encode() + b"\x00" + topic.encode()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "mqtt_codec")
    os.makedirs(out_dir, exist_ok=True)
    count = 0
    for name, data in seeds():
        with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
            f.write(data)
        count += 1
    print("wrote %d seeds to %s" % (count, out_dir))


if __name__ == "__main__":
    main()
