#include "proxy/loopback_addresses.h"

#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

namespace routemesh::proxy {

namespace {

void add_attr(std::vector<char>& msg, unsigned short type, const void* data, std::size_t len) {
  const std::size_t at = NLMSG_ALIGN(msg.size());
  const std::size_t attr_len = RTA_LENGTH(len);
  msg.resize(at + RTA_ALIGN(attr_len));
  auto* rta = reinterpret_cast<rtattr*>(msg.data() + at);
  rta->rta_type = type;
  rta->rta_len = static_cast<unsigned short>(attr_len);
  std::memcpy(RTA_DATA(rta), data, len);
}

}  // namespace

LoopbackAddresses::LoopbackAddresses(prometheus::Registry& registry)
    : changes_(prometheus::BuildCounter()
                   .Name("routemesh_vip_address_changes_total")
                   .Help("Service VIPs added to / removed from the loopback interface, by result")
                   .Register(registry)) {}

LoopbackAddresses::~LoopbackAddresses() {
  clear();
}

void LoopbackAddresses::reconcile(const std::set<std::string>& want) {
  for (auto it = owned_.begin(); it != owned_.end();) {
    if (want.count(*it) != 0) {
      ++it;
      continue;
    }
    if (int err = change(false, *it); err != 0 && err != EADDRNOTAVAIL && err != ENOENT) {
      spdlog::warn("vip: cannot remove {} from lo: {}", *it, std::strerror(err));
    }
    it = owned_.erase(it);
  }
  for (const auto& ip : want) {
    if (owned_.count(ip) != 0) {
      continue;
    }
    const int err = change(true, ip);
    if (err == 0 || err == EEXIST) {
      owned_.insert(ip);
      failed_.erase(ip);
      changes_.Add({{"op", "add"}, {"result", "ok"}}).Increment();
      spdlog::info("vip: {} on lo{}", ip, err == EEXIST ? " (already there; adopted)" : "");
    } else {
      changes_.Add({{"op", "add"}, {"result", "error"}}).Increment();
      if (failed_.insert(ip).second) {
        spdlog::warn("vip: cannot add {} to lo: {} (connections to it will not reach this node)",
                     ip, std::strerror(err));
      }
    }
  }
}

void LoopbackAddresses::clear() {
  for (const auto& ip : owned_) {
    if (int err = change(false, ip); err == 0) {
      changes_.Add({{"op", "remove"}, {"result", "ok"}}).Increment();
    } else if (err != EADDRNOTAVAIL && err != ENOENT) {
      changes_.Add({{"op", "remove"}, {"result", "error"}}).Increment();
      spdlog::warn("vip: cannot remove {} from lo: {}", ip, std::strerror(err));
    }
  }
  owned_.clear();
}

int LoopbackAddresses::change(bool add, const std::string& ip) {
  std::array<unsigned char, 16> bytes{};
  int family = AF_INET;
  std::size_t len = 4;
  if (::inet_pton(AF_INET, ip.c_str(), bytes.data()) != 1) {
    if (::inet_pton(AF_INET6, ip.c_str(), bytes.data()) != 1) {
      return EINVAL;
    }
    family = AF_INET6;
    len = 16;
  }
  const unsigned index = ::if_nametoindex("lo");
  if (index == 0) {
    return errno;
  }
  std::vector<char> msg(NLMSG_LENGTH(sizeof(ifaddrmsg)));
  auto* nh = reinterpret_cast<nlmsghdr*>(msg.data());
  nh->nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
  nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
  nh->nlmsg_seq = 1;
  auto* ifa = reinterpret_cast<ifaddrmsg*>(NLMSG_DATA(nh));
  ifa->ifa_family = static_cast<unsigned char>(family);
  ifa->ifa_prefixlen = static_cast<unsigned char>(len * 8);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = index;
  add_attr(msg, IFA_LOCAL, bytes.data(), len);
  add_attr(msg, IFA_ADDRESS, bytes.data(), len);
  nh = reinterpret_cast<nlmsghdr*>(msg.data());
  nh->nlmsg_len = static_cast<unsigned>(msg.size());

  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    return errno;
  }
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  int result = 0;
  if (::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    result = errno;
  } else {
    std::array<char, 4096> reply{};
    const ssize_t n = ::recv(fd, reply.data(), reply.size(), 0);
    if (n < 0) {
      result = errno;
    } else if (static_cast<std::size_t>(n) >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
      const auto* rh = reinterpret_cast<const nlmsghdr*>(reply.data());
      if (rh->nlmsg_type == NLMSG_ERROR) {
        const auto* e = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(rh));
        result = -e->error;
      }
    } else {
      result = EPROTO;
    }
  }
  ::close(fd);
  return result;
}

}  // namespace routemesh::proxy
