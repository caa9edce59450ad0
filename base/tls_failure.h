#pragma once
// Why a TLS handshake failed, in words for a log line. Every TLS server and client of the node
// (the admin API, Raft, the overlay) logs its refusals with it, so an operator reads the same
// reason ("certificate revoked", "certificate has expired") whichever port refused.

#include <boost/system/error_code.hpp>

#include <string>

struct ssl_st;  // OpenSSL's SSL

namespace routemesh::base {

// `ec`'s text, with what certificate verification said when it refused the peer's certificate:
// "certificate verify failed (certificate revoked)". `ssl` may be null.
std::string tls_handshake_failure(const ssl_st* ssl, const boost::system::error_code& ec);

}  // namespace routemesh::base
