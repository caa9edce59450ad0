#pragma once

// DrainBuffer: a receive buffer that tells Asio's epoll reactor when a read drained the socket.
//
// Contract: `socket.async_read_some(DrainBuffer(p, n), token)` behaves exactly like
// `socket.async_read_some(asio::buffer(p, n), token)` (same completion, errors, cancellation),
// but a read that returns fewer than n bytes marks the descriptor's read side as exhausted, so
// the NEXT read on that socket waits for the next readiness event instead of first trying a
// recv that would find nothing (EAGAIN). Use it only on stream (TCP) sockets.
//
// Why: Boost 1.81's epoll reactor (edge-triggered) marks a descriptor exhausted only when a
// recv returns 0 (EOF), so every read after a non-empty one starts with a speculative recv;
// on a request/response connection the peer has usually not answered yet, and that recv is
// an EAGAIN syscall. HAProxy treats a short read as "drained" and waits for the poller; this
// type makes Asio do the same. A TCP recv returns less than asked only once the receive queue
// (and the backlog, processed before returning) is empty; bytes arriving later raise a new
// edge, which sets the descriptor's speculative flag again (epoll_reactor::perform_io), so no
// wake-up is lost. `async_wait(wait_read)` is no substitute: its non-speculative start costs
// an epoll_ctl(EPOLL_CTL_MOD) per wait (measured: +1.0 syscall per request).
//
// Mechanism: a specialisation of Asio's internal reactive_socket_recv_op_base for this buffer
// type whose perform step reports `done_and_exhausted` on a short read. It relies on Asio
// internals, so it is compiled only for the Boost version it was checked against; elsewhere
// DrainBuffer is a plain single buffer and reads behave as before.

#include <boost/asio/buffer.hpp>
#include <boost/version.hpp>

#include <cstddef>

namespace routemesh::proxy {

struct DrainBuffer : boost::asio::mutable_buffer {
  DrainBuffer(void* data, std::size_t size) noexcept : boost::asio::mutable_buffer(data, size) {}
};

}  // namespace routemesh::proxy

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_WINDOWS)
#include <boost/asio/detail/reactive_socket_recv_op.hpp>

namespace boost::asio::detail {

template <>
class reactive_socket_recv_op_base<routemesh::proxy::DrainBuffer> : public reactor_op {
 public:
  reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                               socket_ops::state_type state,
                               const routemesh::proxy::DrainBuffer& buffers,
                               socket_base::message_flags flags, func_type complete_func)
      : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
        socket_(socket),
        state_(state),
        buffers_(buffers),
        flags_(flags) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
    if (!socket_ops::non_blocking_recv1(o->socket_, o->buffers_.data(), o->buffers_.size(),
                                        o->flags_, stream, o->ec_, o->bytes_transferred_)) {
      return not_done;  // EAGAIN: wait for the reactor
    }
    // EOF (0 bytes, as Asio itself does) or a short read: the receive queue is empty now.
    if (stream && !o->ec_ && o->bytes_transferred_ < o->buffers_.size()) {
      return done_and_exhausted;
    }
    if (stream && o->bytes_transferred_ == 0) {
      return done_and_exhausted;
    }
    return done;
  }

 private:
  socket_type socket_;
  socket_ops::state_type state_;
  routemesh::proxy::DrainBuffer buffers_;
  socket_base::message_flags flags_;
};

}  // namespace boost::asio::detail
#endif
