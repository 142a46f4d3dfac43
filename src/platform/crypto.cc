#include "counterlink/platform/crypto.h"

#include <cstdint>
#include <memory>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace counterlink::platform {
namespace {

constexpr uint8_t kSealVersion = 1;
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
constexpr size_t kKeySize = 32;
constexpr size_t kMaxKeyIdSize = 32;

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* bytes_of(std::string& s) {
  return reinterpret_cast<unsigned char*>(s.data());
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

[[noreturn]] void openssl_failed(const char* what) {
  throw std::runtime_error(std::string("OpenSSL failure in ") + what);
}

bool valid_key_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxKeyIdSize) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Parsed view of a sealed value; all views point into the input.
struct SealedParts {
  std::string_view header;  // version, length, key id
  std::string_view key_id;
  std::string_view nonce;
  std::string_view ciphertext;
  std::string_view tag;
};

std::optional<SealedParts> parse_sealed(std::string_view sealed) {
  if (sealed.size() < 2) return std::nullopt;
  if (static_cast<uint8_t>(sealed[0]) != kSealVersion) return std::nullopt;
  size_t id_len = static_cast<uint8_t>(sealed[1]);
  if (id_len == 0 || id_len > kMaxKeyIdSize) return std::nullopt;
  size_t header_len = 2 + id_len;
  if (sealed.size() < header_len + kNonceSize + kTagSize) return std::nullopt;
  SealedParts parts;
  parts.header = sealed.substr(0, header_len);
  parts.key_id = sealed.substr(2, id_len);
  parts.nonce = sealed.substr(header_len, kNonceSize);
  size_t ct_len = sealed.size() - header_len - kNonceSize - kTagSize;
  parts.ciphertext = sealed.substr(header_len + kNonceSize, ct_len);
  parts.tag = sealed.substr(sealed.size() - kTagSize);
  return parts;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-' || c == '+') return 62;
  if (c == '_' || c == '/') return 63;
  return -1;
}

}  // namespace

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(bytes_of(out), static_cast<int>(n)) != 1) openssl_failed("RAND_bytes");
  return out;
}

std::string sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), bytes_of(out), &len, EVP_sha256(), nullptr) != 1 ||
      len != 32) {
    openssl_failed("EVP_Digest");
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  // HMAC() with a null key pointer would use a static buffer; an empty key is
  // legal HMAC, so pass a valid pointer.
  static const unsigned char kEmpty = 0;
  const unsigned char* key_ptr = key.empty() ? &kEmpty : bytes_of(key);
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), bytes_of(data), data.size(),
           bytes_of(out), &len) == nullptr ||
      len != 32) {
    openssl_failed("HMAC");
  }
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = nibble(text[i]);
    int lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out = base64url_encode(bytes);
  for (char& c : out) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  out.append((3 - bytes.size() % 3) % 3, '=');
  return out;
}

std::string base64url_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) |
                 uint32_t(uint8_t(bytes[i + 2]));
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  // Strip up to two '=' of padding; padding elsewhere is an error below.
  size_t pad = 0;
  while (!text.empty() && text.back() == '=' && pad < 2) {
    text.remove_suffix(1);
    ++pad;
  }
  if (text.size() % 4 == 1) return std::nullopt;
  if (pad > 0 && (text.size() + pad) % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = base64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero (canonical encoding).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_alnum(size_t length) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  // 62 symbols: accept bytes < 248 (= 4 * 62) so every symbol is equally likely.
  std::string out;
  out.reserve(length);
  while (out.size() < length) {
    std::string pool = random_bytes(length - out.size() + 8);
    for (unsigned char c : pool) {
      if (c >= 248) continue;
      out.push_back(kAlphabet[c % 62]);
      if (out.size() == length) break;
    }
  }
  return out;
}

std::string generate_device_secret() {
  return random_alnum(32);
}

std::string generate_api_key_secret() {
  return "sk_" + random_alnum(40);
}

// ---- KeyRing -----------------------------------------------------------------

KeyRing::KeyRing(std::map<std::string, std::string> keys, std::string active_id)
    : keys_(std::move(keys)), active_id_(std::move(active_id)) {
  if (keys_.empty()) {
    throw std::invalid_argument("key ring: no keys configured; add at least one 32-byte key");
  }
  for (const auto& [id, key] : keys_) {
    if (!valid_key_id(id)) {
      throw std::invalid_argument("key ring: key id '" + id +
                                  "' is invalid; use 1..32 characters of [A-Za-z0-9_.-]");
    }
    if (key.size() != kKeySize) {
      throw std::invalid_argument("key ring: key '" + id + "' is " + std::to_string(key.size()) +
                                  " bytes; AES-256 needs exactly 32 (openssl rand -base64 32)");
    }
  }
  if (keys_.count(active_id_) == 0) {
    throw std::invalid_argument("key ring: active key id '" + active_id_ +
                                "' is not among the configured keys");
  }
}

KeyRing KeyRing::from_config(const std::vector<KeyConfig>& keys, const std::string& active_id) {
  std::map<std::string, std::string> raw;
  for (const auto& entry : keys) {
    if (raw.count(entry.id) != 0) {
      throw std::invalid_argument("key ring: key id '" + entry.id + "' is configured twice");
    }
    auto decoded = base64url_decode(entry.key_base64);
    if (!decoded) {
      throw std::invalid_argument("key ring: key '" + entry.id +
                                  "' is not valid base64; generate one with "
                                  "`openssl rand -base64 32`");
    }
    raw.emplace(entry.id, std::move(*decoded));
  }
  return KeyRing(std::move(raw), active_id);
}

std::string KeyRing::generate_key_base64() {
  // Standard alphabet with padding, like `openssl rand -base64 32`.
  return base64_encode(random_bytes(kKeySize));
}

std::string KeyRing::seal(std::string_view plaintext, std::string_view aad) const {
  const std::string& key = keys_.at(active_id_);
  std::string out;
  out.reserve(2 + active_id_.size() + kNonceSize + plaintext.size() + kTagSize);
  out.push_back(static_cast<char>(kSealVersion));
  out.push_back(static_cast<char>(active_id_.size()));
  out.append(active_id_);
  size_t header_len = out.size();
  out.append(random_bytes(kNonceSize));

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) openssl_failed("EVP_CIPHER_CTX_new");
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, bytes_of(key),
                         bytes_of(std::string_view(out).substr(header_len))) != 1) {
    openssl_failed("EVP_EncryptInit_ex");
  }
  int len = 0;
  if (EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes_of(out), static_cast<int>(header_len)) !=
      1) {
    openssl_failed("EVP_EncryptUpdate(aad)");
  }
  if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes_of(aad),
                                        static_cast<int>(aad.size())) != 1) {
    openssl_failed("EVP_EncryptUpdate(aad)");
  }
  size_t ct_offset = out.size();
  out.resize(ct_offset + plaintext.size() + kTagSize);
  int written = 0;
  if (!plaintext.empty() &&
      EVP_EncryptUpdate(ctx.get(), bytes_of(out) + ct_offset, &written, bytes_of(plaintext),
                        static_cast<int>(plaintext.size())) != 1) {
    openssl_failed("EVP_EncryptUpdate");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), bytes_of(out) + ct_offset + written, &final_len) != 1) {
    openssl_failed("EVP_EncryptFinal_ex");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize,
                          bytes_of(out) + ct_offset + plaintext.size()) != 1) {
    openssl_failed("EVP_CTRL_GCM_GET_TAG");
  }
  return out;
}

OpenResult KeyRing::open(std::string_view sealed, std::string_view aad) const {
  auto parts = parse_sealed(sealed);
  if (!parts) return {{}, "sealed value is malformed (truncated or unknown format version)"};
  auto it = keys_.find(std::string(parts->key_id));
  if (it == keys_.end()) {
    return {{},
            "sealed under key id '" + std::string(parts->key_id) +
                "', which is not in the key ring; restore that key to the configuration"};
  }
  const std::string& key = it->second;

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) openssl_failed("EVP_CIPHER_CTX_new");
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, bytes_of(key), bytes_of(parts->nonce)) != 1) {
    openssl_failed("EVP_DecryptInit_ex");
  }
  int len = 0;
  if (EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes_of(parts->header),
                        static_cast<int>(parts->header.size())) != 1) {
    openssl_failed("EVP_DecryptUpdate(aad)");
  }
  if (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes_of(aad),
                                        static_cast<int>(aad.size())) != 1) {
    openssl_failed("EVP_DecryptUpdate(aad)");
  }
  std::string plaintext(parts->ciphertext.size(), '\0');
  int written = 0;
  if (!parts->ciphertext.empty() &&
      EVP_DecryptUpdate(ctx.get(), bytes_of(plaintext), &written, bytes_of(parts->ciphertext),
                        static_cast<int>(parts->ciphertext.size())) != 1) {
    openssl_failed("EVP_DecryptUpdate");
  }
  std::string tag(parts->tag);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1) {
    openssl_failed("EVP_CTRL_GCM_SET_TAG");
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), bytes_of(plaintext) + written, &final_len) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return {{},
            "sealed value failed authentication under key '" + std::string(parts->key_id) +
                "' (tampered, bound to another row, or wrong key material)"};
  }
  return {std::move(plaintext), {}};
}

bool KeyRing::needs_reseal(std::string_view sealed) const {
  auto parts = parse_sealed(sealed);
  return parts && parts->key_id != active_id_;
}

std::optional<std::string> KeyRing::key_id_of(std::string_view sealed) {
  auto parts = parse_sealed(sealed);
  if (!parts) return std::nullopt;
  return std::string(parts->key_id);
}

}  // namespace counterlink::platform
