#include "counterlink/platform/crypto.h"

#include <set>
#include <stdexcept>

#include <gtest/gtest.h>

namespace counterlink::platform {
namespace {

std::string key_of(char fill) {
  return std::string(32, fill);
}

TEST(Crypto, HmacSha256MatchesRfc4231TestCase2) {
  // RFC 4231, test case 2: key "Jefe".
  EXPECT_EQ(hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, HmacSha256MatchesRfc4231TestCase1) {
  EXPECT_EQ(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(Crypto, Sha256OfEmptyInputIsTheKnownDigest) {
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Crypto, HexRoundTripsAndRejectsNonHex) {
  EXPECT_EQ(hex(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(hex_decode("00FF10"), std::string("\x00\xff\x10", 3));
  EXPECT_FALSE(hex_decode("abc").has_value());
  EXPECT_FALSE(hex_decode("zz").has_value());
}

TEST(Crypto, Base64UrlHasNoPaddingAndRoundTrips) {
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  for (size_t n = 0; n < 40; ++n) {
    std::string data = random_bytes(n);
    EXPECT_EQ(base64url_decode(base64url_encode(data)), data) << n;
  }
}

TEST(Crypto, Base64DecodeAcceptsStandardAlphabetWithPadding) {
  EXPECT_EQ(base64url_decode("+/8="), std::string("\xfb\xff"));
  EXPECT_EQ(base64url_decode("Zg=="), "f");
  EXPECT_FALSE(base64url_decode("Zg=").has_value());
  EXPECT_FALSE(base64url_decode("Z").has_value());
  EXPECT_FALSE(base64url_decode("Zm9v!").has_value());
  EXPECT_FALSE(base64url_decode("Zh").has_value());  // non-zero leftover bits
}

TEST(Crypto, ConstantTimeEqualComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

TEST(Crypto, DeviceSecretIs32AlphanumericCharactersAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    std::string s = generate_device_secret();
    ASSERT_EQ(s.size(), 32u);
    for (char c : s)
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << s;
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 50u);
}

TEST(Crypto, ApiKeySecretHasPrefixAnd40Characters) {
  std::string s = generate_api_key_secret();
  EXPECT_EQ(s.substr(0, 3), "sk_");
  EXPECT_EQ(s.size(), 43u);
}

TEST(KeyRing, SealThenOpenReturnsThePlaintext) {
  KeyRing ring({{"k1", key_of('a')}}, "k1");
  std::string sealed = ring.seal("s3cret", "dv_1");
  EXPECT_EQ(sealed.size(), 1 + 1 + 2 + 12 + 6 + 16u);
  EXPECT_EQ(sealed[0], '\x01');
  OpenResult opened = ring.open(sealed, "dv_1");
  ASSERT_TRUE(opened.ok()) << opened.error;
  EXPECT_EQ(opened.plaintext, "s3cret");
}

TEST(KeyRing, SealingTwiceUsesFreshNonces) {
  KeyRing ring({{"k1", key_of('a')}}, "k1");
  EXPECT_NE(ring.seal("same", "dv_1"), ring.seal("same", "dv_1"));
}

TEST(KeyRing, OpenFailsWhenCiphertextTagOrHeaderIsTampered) {
  KeyRing ring({{"k1", key_of('a')}, {"k2", key_of('b')}}, "k1");
  std::string sealed = ring.seal("secret-value", "dv_1");
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x01;
    EXPECT_FALSE(ring.open(bad, "dv_1").ok()) << "byte " << i;
  }
}

TEST(KeyRing, OpenFailsUnderAnotherRowsAad) {
  KeyRing ring({{"k1", key_of('a')}}, "k1");
  std::string sealed = ring.seal("secret", "dv_1");
  OpenResult opened = ring.open(sealed, "dv_2");
  EXPECT_FALSE(opened.ok());
  EXPECT_NE(opened.error.find("authentication"), std::string::npos) << opened.error;
}

TEST(KeyRing, OpenNamesAnUnknownKeyId) {
  KeyRing old_ring({{"old", key_of('a')}}, "old");
  KeyRing new_ring({{"new", key_of('b')}}, "new");
  OpenResult opened = new_ring.open(old_ring.seal("secret", "dv_1"), "dv_1");
  EXPECT_FALSE(opened.ok());
  EXPECT_NE(opened.error.find("'old'"), std::string::npos) << opened.error;
}

TEST(KeyRing, OpenRejectsTruncatedInput) {
  KeyRing ring({{"k1", key_of('a')}}, "k1");
  std::string sealed = ring.seal("secret", "dv_1");
  EXPECT_FALSE(ring.open(sealed.substr(0, 10), "dv_1").ok());
  EXPECT_FALSE(ring.open("", "dv_1").ok());
}

TEST(KeyRing, RotationOpensOldValuesAndFlagsThemForReseal) {
  KeyRing before({{"k1", key_of('a')}}, "k1");
  std::string old_sealed = before.seal("secret", "dv_1");
  KeyRing after({{"k1", key_of('a')}, {"k2", key_of('b')}}, "k2");
  EXPECT_FALSE(before.has_inactive_keys());
  EXPECT_TRUE(after.has_inactive_keys());
  EXPECT_TRUE(after.needs_reseal(old_sealed));
  OpenResult opened = after.open(old_sealed, "dv_1");
  ASSERT_TRUE(opened.ok());
  std::string resealed = after.seal(opened.plaintext, "dv_1");
  EXPECT_FALSE(after.needs_reseal(resealed));
  EXPECT_EQ(KeyRing::key_id_of(resealed), "k2");
  EXPECT_FALSE(after.needs_reseal("garbage"));
}

TEST(KeyRing, FromConfigDecodesBase64Keys) {
  std::string key = KeyRing::generate_key_base64();
  KeyRing ring = KeyRing::from_config({{"k1", key}}, "k1");
  EXPECT_EQ(ring.active_key_id(), "k1");
  EXPECT_TRUE(ring.open(ring.seal("x", "a"), "a").ok());
}

TEST(KeyRing, FromConfigRejectsBadEntriesWithClearMessages) {
  auto message = [](const std::vector<KeyConfig>& keys, const std::string& active) {
    try {
      KeyRing::from_config(keys, active);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string good = KeyRing::generate_key_base64();
  EXPECT_NE(message({{"k1", "c2hvcnQ="}}, "k1").find("32"), std::string::npos);
  EXPECT_NE(message({{"k1", "not base64!"}}, "k1").find("base64"), std::string::npos);
  EXPECT_NE(message({{"k1", good}}, "k9").find("'k9'"), std::string::npos);
  EXPECT_NE(message({{"k1", good}, {"k1", good}}, "k1").find("twice"), std::string::npos);
  EXPECT_NE(message({}, "k1").find("no keys"), std::string::npos);
  EXPECT_NE(message({{"bad id", good}}, "bad id").find("invalid"), std::string::npos);
}

}  // namespace
}  // namespace counterlink::platform
