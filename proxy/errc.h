#pragma once
// Expected failures of the proxy's data path, as error codes of their own category. A session
// returns them from one exchange with an upstream (one attempt of a request) and turns them
// into a passive-health outcome, perhaps a retry, and the answer the client gets. Success is
// the empty error_code; none of these is ever thrown.

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace routemesh::proxy {

enum class errc {
  upstream_connect_failed = 1,  // refused / unreachable
  upstream_connect_timeout,     // upstream_connect_ms passed
  upstream_reset,               // EOF or reset before any response byte
  upstream_timeout,             // no response head within upstream_response_ms
  upstream_malformed,           // invalid response head, or a 101 nobody asked for
  upstream_aborted,             // the upstream failed mid-body: the client got a truncated response
  client_gone,                  // the client closed, reset or timed out
  bad_request_body,             // invalid chunk framing in the request body
  killed,                       // shutdown after drain_ms cancelled the exchange
  local_resources,              // this node ran out of descriptors, buffers or ports
  request_body_timeout,         // the request body missed timeouts.request_body_ms or the min rate
};

// Whether a failed socket() or connect() is this node's fault rather than the endpoint's: out
// of descriptors (EMFILE, ENFILE), kernel memory (ENOBUFS, ENOMEM) or local ports
// (EADDRNOTAVAIL). Such a failure must not eject the endpoint.
bool is_local_resource_error(const boost::system::error_code& ec) noexcept;

const boost::system::error_category& proxy_category() noexcept;
boost::system::error_code make_error_code(errc e) noexcept;

}  // namespace routemesh::proxy

namespace boost::system {
template <>
struct is_error_code_enum<routemesh::proxy::errc> : std::true_type {};
}  // namespace boost::system
