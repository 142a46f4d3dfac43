// Cryptographic primitives of the platform: random secrets, SHA-256,
// HMAC-SHA256, hex and base64url, constant-time comparison, and the KeyRing
// that seals secrets at rest (device secrets, API signing keys) with
// AES-256-GCM.
//
// OpenSSL stays in crypto.cc; this header is cheap to include.
//
// Threading: free functions are thread-safe. A KeyRing is immutable after
// construction; its const methods may be called from any thread concurrently.
//
// Errors: functions that can meet bad input (decoding, KeyRing::open) return
// std::optional / OpenResult. Configuration (KeyRing::from_config) throws
// std::invalid_argument with a message naming the bad entry. The remaining
// functions throw std::runtime_error only if OpenSSL itself fails (no entropy,
// allocation failure) - a broken process, not a bad request.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace counterlink::platform {

// ---- Primitives --------------------------------------------------------------

// `n` bytes from the OpenSSL CSPRNG.
std::string random_bytes(size_t n);

// Raw 32-byte digests.
std::string sha256(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);

// Lowercase hex of raw bytes, and back (nullopt on odd length / non-hex).
std::string hex(std::string_view bytes);
std::optional<std::string> hex_decode(std::string_view text);

// RFC 4648 section 5 (URL-safe alphabet) without padding.
std::string base64url_encode(std::string_view bytes);
// RFC 4648 section 4 (standard alphabet) with '=' padding.
std::string base64_encode(std::string_view bytes);
// Accepts the URL-safe and the standard alphabet, with or without '='
// padding (so `openssl rand -base64 32` output decodes too); nullopt on any
// other character or an impossible length.
std::optional<std::string> base64url_decode(std::string_view text);

// Compares in time that depends only on the lengths, not on the contents.
bool constant_time_equal(std::string_view a, std::string_view b);

// ---- Secrets -------------------------------------------------------------------

// `length` characters of [A-Za-z0-9], uniformly chosen (rejection sampling,
// no modulo bias): 5.95 bits per character.
std::string random_alnum(size_t length);

// A device secret: 32 characters of [A-Za-z0-9] (190 bits). Printable so a
// firmware engineer can paste it into `openssl dgst -hmac <secret>`; the
// HMAC key is the ASCII string itself.
std::string generate_device_secret();

// An API key secret: "sk_" + 40 characters of [A-Za-z0-9] (238 bits). The
// store keeps sha256(secret), never the secret (see store::ApiKey).
std::string generate_api_key_secret();

// ---- Secrets at rest -------------------------------------------------------------

// What KeyRing::open returns: the plaintext, or an error for logs. The error
// never contains key material or plaintext.
struct OpenResult {
  std::string plaintext;
  std::string error;  // empty on success
  bool ok() const { return error.empty(); }
};

// One master key from configuration.
struct KeyConfig {
  std::string id;          // 1..32 chars of [A-Za-z0-9_.-], e.g. "k2024a"
  std::string key_base64;  // 32 random bytes, base64 (`openssl rand -base64 32`)
};

// AES-256-GCM keys identified by a short id, exactly one of them active.
//
// Sealed format (version 1), bytes:
//   [0]            0x01 (format version)
//   [1]            L = length of the key id (1..32)
//   [2, 2+L)       key id (ASCII)
//   next 12        random nonce
//   next N         ciphertext (N = plaintext length)
//   last 16        GCM tag
// The GCM additional data is the header (version, L, key id) followed by the
// caller's `aad`, so neither the key id nor the row binding can be changed
// without failing authentication. Callers pass the owning row's id as `aad`
// (the device id for device secrets, the key id for API signing keys) so a
// ciphertext copied into another row does not open.
//
// Rotation: add a new key, make it active, keep the old ones until every
// sealed value answers needs_reseal() == false (re-seal on next write, or in
// a background pass), then remove them.
class KeyRing {
 public:
  // `keys`: id -> raw 32-byte key. Throws std::invalid_argument if a key has
  // the wrong length, an id is malformed, or `active_id` is not in `keys`.
  KeyRing(std::map<std::string, std::string> keys, std::string active_id);

  // From configuration (base64 keys). Throws std::invalid_argument naming the
  // offending entry: duplicate id, bad base64, key not 32 bytes, no keys,
  // unknown active id.
  static KeyRing from_config(const std::vector<KeyConfig>& keys, const std::string& active_id);

  // A new random key, base64, for operators' tooling.
  static std::string generate_key_base64();

  // Seals under the active key with a fresh random nonce.
  std::string seal(std::string_view plaintext, std::string_view aad) const;

  // Opens a value sealed under any key of the ring. Errors: malformed
  // (too short, unknown format version), unknown key id (named in the error:
  // the key was removed from configuration too early), authentication failed
  // (tampered, wrong aad, or wrong key material for that id).
  OpenResult open(std::string_view sealed, std::string_view aad) const;

  // True if `sealed` is well formed and was sealed under a key other than the
  // active one (it should be re-sealed). False for malformed input.
  bool needs_reseal(std::string_view sealed) const;

  // The key id a sealed value names, or nullopt if malformed.
  static std::optional<std::string> key_id_of(std::string_view sealed);

  const std::string& active_key_id() const { return active_id_; }
  // True while keys other than the active one are configured (a rotation
  // is in progress: values sealed under them can be re-sealed).
  bool has_inactive_keys() const { return keys_.size() > 1; }

 private:
  std::map<std::string, std::string> keys_;
  std::string active_id_;
};

}  // namespace counterlink::platform
