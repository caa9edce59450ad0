#pragma once
// Everything `routemesh cluster init` creates (pure, over values): a new root CA (or the
// operator's own), the manager key and the root's key sealed with it, the first manager's
// certificate, the admin client certificate the CLI uses, and the first two join tokens. cmd/
// writes the files (tls/credentials.h) and puts the sealed key and the tokens' hashes in the
// bootstrap marker; the tokens themselves are printed once and never stored.

#include "tls/pki.h"
#include "tls/types.h"

#include <boost/system/result.hpp>

#include <cstdint>
#include <string>

namespace routemesh::tls {

struct ClusterPki {
  std::string ca_pem;
  std::string manager_key;    // "" with an external CA
  std::string sealed_ca_key;  // the root's key sealed with manager_key ("" with an external CA)
  std::string ca_key_pem;     // only with an external CA: the key stays in a file
  std::string node_cert_pem;  // the first manager: routemesh://<cluster>/manager/<node id>
  std::string node_key_pem;
  std::string admin_cert_pem;  // routemesh://<cluster>/admin/<admin name>
  std::string admin_key_pem;
  JoinToken worker_token;
  JoinToken manager_token;
};

// Where the root comes from and where its key goes.
struct RootChoice {
  const CertificateAuthority* own = nullptr;  // null: a new root; else the operator's (import())
  bool external = false;  // the key stays in files (ca-key.pem), never in the state
};

// `node` names the first manager (its identity must have role manager; its IPs and names go
// into the certificate's SANs). Certificates are valid from `now` (minus kBackdate): the CA for
// kCaLifetime, the node for `node_lifetime`, the admin for `user_lifetime`. Errors as
// CertificateAuthority::create/issue, new_secret.
boost::system::result<ClusterPki> new_cluster_pki(const Subject& node,
                                                  const std::string& admin_name, std::int64_t now,
                                                  std::int64_t node_lifetime = kNodeLifetime,
                                                  std::int64_t user_lifetime = kUserLifetime,
                                                  RootChoice root = {});

}  // namespace routemesh::tls
