#include "proxy/l4/tunnel.h"

#include "proxy/errc.h"
#include "proxy/l4/splice.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace routemesh::proxy {

asio::awaitable<TunnelResult> run_tunnel(Worker& w, LiveConn& conn, tcp::socket& client,
                                         tcp::socket& upstream,
                                         std::array<asio::const_buffer, 2> to_client,
                                         asio::const_buffer to_upstream) {
  constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
  TunnelResult result;
  {
    conn.arm(Clock::now(), w.timeouts().idle);
    auto [ec, n] = co_await asio::async_write(client, to_client, tuple);
    result.to_client += n;
    if (ec || conn.expired) {
      result.ec = errc::client_gone;
      co_return result;
    }
  }
  if (to_upstream.size() > 0) {
    conn.arm(Clock::now(), w.timeouts().idle);
    auto [ec, n] = co_await asio::async_write(upstream, to_upstream, tuple);
    result.to_upstream += n;
    if (ec || conn.expired) {
      co_return result;
    }
  }
  const SpliceResult r =
      co_await splice_both(w, conn, client, upstream, w.timeouts().l4_idle, nullptr);
  result.to_upstream += r.a_to_b;
  result.to_client += r.b_to_a;
  result.spliced = true;
  co_return result;
}

}  // namespace routemesh::proxy
