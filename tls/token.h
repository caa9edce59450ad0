#pragma once
// Join tokens (tls/types.h, JoinToken): their text, fresh secrets, and the hash the store keeps
// instead of the secret. SHA-256 and randomness come from OpenSSL; no I/O.

#include "tls/types.h"

#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <variant>

namespace routemesh::tls {

inline constexpr std::string_view kTokenPrefix = "RMTKN-1-";

// "RMTKN-1-<ca_digest>-<secret>".
std::string format_token(const JoinToken& token);
// errc::malformed_token unless `text` is exactly that form (lower-case hex, the exact lengths).
boost::system::result<JoinToken> parse_token(std::string_view text);

// A new secret: 16 bytes from OpenSSL's CSPRNG as 32 lower-case hex digits. Keys and secrets
// are the one place tls/ draws its own randomness: they must come from the CSPRNG, never from
// a seedable generator passed in. errc::crypto_failure when the CSPRNG fails.
boost::system::result<std::string> new_secret();

// What the store keeps for a token: SHA-256 of the secret, 64 lower-case hex digits.
std::string secret_hash(std::string_view secret);
// Whether `secret` hashes to `stored_hash`, compared in constant time. False for an empty hash
// (no token of that kind).
bool secret_matches(std::string_view secret, std::string_view stored_hash);

// `routemesh node --join TOKEN@ADDR`: the token (checked with parse_token) and the admin
// address of a manager ("IP:PORT", "[V6]:PORT" or "HOST:PORT"). The error says what is wrong,
// for the user.
struct JoinTarget {
  JoinToken token;
  std::string address;
};
std::variant<JoinTarget, std::string> parse_join_target(std::string_view text);

// True for exactly `length` lower-case hex digits.
bool is_lower_hex(std::string_view text, std::size_t length);
// `size` bytes as lower-case hex digits, two per byte.
std::string lower_hex(const unsigned char* data, std::size_t size);

}  // namespace routemesh::tls
