#include "tls/cluster_pki.h"

#include "tls/token.h"

#include <utility>

namespace routemesh::tls {
namespace {

struct Pair {
  std::string cert;
  std::string key;
};

boost::system::result<Pair> issue_new(const CertificateAuthority& ca, const Subject& subject,
                                      std::int64_t now, std::int64_t lifetime) {
  auto key = generate_key();
  if (!key) {
    return key.error();
  }
  auto csr = make_request(*key, subject.identity.id);
  if (!csr) {
    return csr.error();
  }
  auto cert = ca.issue(*csr, subject, now, lifetime);
  if (!cert) {
    return cert.error();
  }
  return Pair{std::move(*cert), std::move(*key)};
}

}  // namespace

boost::system::result<ClusterPki> new_cluster_pki(const Subject& node,
                                                  const std::string& admin_name, std::int64_t now,
                                                  std::int64_t node_lifetime,
                                                  std::int64_t user_lifetime, RootChoice root) {
  if (node.identity.role != Role::manager) {
    return errc::bad_request;
  }
  boost::system::result<CertificateAuthority> ca =
      root.own != nullptr
          ? CertificateAuthority::load(root.own->certificate_pem(), root.own->key_pem())
          : CertificateAuthority::create(node.identity.cluster_id, now);
  if (!ca) {
    return ca.error();
  }
  auto manager = issue_new(*ca, node, now, node_lifetime);
  if (!manager) {
    return manager.error();
  }
  const Subject admin{{node.identity.cluster_id, Role::admin, admin_name}, {}, {}};
  auto user = issue_new(*ca, admin, now, user_lifetime);
  if (!user) {
    return user.error();
  }
  auto worker_secret = new_secret();
  auto manager_secret = new_secret();
  if (!worker_secret || !manager_secret) {
    return errc::crypto_failure;
  }
  ClusterPki out;
  out.ca_pem = ca->certificate_pem();
  if (root.external) {
    out.ca_key_pem = ca->key_pem();
  } else {
    auto manager_key = new_manager_key();
    if (!manager_key) {
      return manager_key.error();
    }
    auto sealed = seal_key(ca->key_pem(), *manager_key);
    if (!sealed) {
      return sealed.error();
    }
    out.manager_key = std::move(*manager_key);
    out.sealed_ca_key = std::move(*sealed);
  }
  out.node_cert_pem = std::move(manager->cert);
  out.node_key_pem = std::move(manager->key);
  out.admin_cert_pem = std::move(user->cert);
  out.admin_key_pem = std::move(user->key);
  out.worker_token = JoinToken{ca->digest(), std::move(*worker_secret)};
  out.manager_token = JoinToken{ca->digest(), std::move(*manager_secret)};
  return out;
}

}  // namespace routemesh::tls
