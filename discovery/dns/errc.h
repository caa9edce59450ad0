#pragma once
// Expected failures of the forwarder's exchanges with upstream resolvers, as error codes of
// their own category. server.cc returns them from one attempt at one upstream, counts them
// (routemesh_dns_upstream_queries_total{result}) and moves on to the next upstream; none is
// ever thrown.

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace routemesh::discovery::dns {

enum class errc {
  upstream_timeout = 1,  // no reply of ours within dns.upstream_timeout_ms
  upstream_unreachable,  // a socket, connect or send failed, or an ICMP error came back
  upstream_closed,       // TCP: the upstream closed or reset before its reply
};

const boost::system::error_category& dns_category() noexcept;
boost::system::error_code make_error_code(errc e) noexcept;

}  // namespace routemesh::discovery::dns

namespace boost::system {
template <>
struct is_error_code_enum<routemesh::discovery::dns::errc> : std::true_type {};
}  // namespace boost::system
