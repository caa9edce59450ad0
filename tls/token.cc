#include "tls/token.h"

#include "base/address.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>

namespace routemesh::tls {
namespace {

constexpr std::size_t kDigestHex = 64;
constexpr std::size_t kSecretHex = 32;

}  // namespace

bool is_lower_hex(std::string_view text, std::size_t length) {
  if (text.size() != length) {
    return false;
  }
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::string format_token(const JoinToken& token) {
  std::string out(kTokenPrefix);
  out += token.ca_digest;
  out += '-';
  out += token.secret;
  return out;
}

boost::system::result<JoinToken> parse_token(std::string_view text) {
  if (!text.starts_with(kTokenPrefix)) {
    return errc::malformed_token;
  }
  text.remove_prefix(kTokenPrefix.size());
  if (text.size() != kDigestHex + 1 + kSecretHex || text[kDigestHex] != '-') {
    return errc::malformed_token;
  }
  JoinToken token{std::string(text.substr(0, kDigestHex)),
                  std::string(text.substr(kDigestHex + 1))};
  if (!is_lower_hex(token.ca_digest, kDigestHex) || !is_lower_hex(token.secret, kSecretHex)) {
    return errc::malformed_token;
  }
  return token;
}

std::variant<JoinTarget, std::string> parse_join_target(std::string_view text) {
  const auto at = text.rfind('@');
  if (at == std::string_view::npos) {
    return std::string(
        "expected TOKEN@ADDR: the join token (RMTKN-1-..., printed by `cluster init` and "
        "`cluster token rotate`), '@', and a manager's admin address");
  }
  auto token = parse_token(text.substr(0, at));
  if (!token) {
    return token.error().message();
  }
  const std::string address(text.substr(at + 1));
  if (!base::parse_host_port(address, {.host_names = true})) {
    return "bad manager address \"" + address + "\" after '@' (expected IP:PORT)";
  }
  return JoinTarget{std::move(*token), address};
}

boost::system::result<std::string> new_secret() {
  std::array<unsigned char, kSecretHex / 2> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return errc::crypto_failure;
  }
  return lower_hex(bytes.data(), bytes.size());
}

std::string secret_hash(std::string_view secret) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest.data());
  return lower_hex(digest.data(), digest.size());
}

bool secret_matches(std::string_view secret, std::string_view stored_hash) {
  if (!is_lower_hex(stored_hash, kDigestHex)) {
    return false;
  }
  const std::string got = secret_hash(secret);
  return CRYPTO_memcmp(got.data(), stored_hash.data(), kDigestHex) == 0;
}

std::string lower_hex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 0xf];
  }
  return out;
}

}  // namespace routemesh::tls
