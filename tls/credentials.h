#pragma once
// Where certificates and keys live on disk, and reading/writing them (blocking POSIX files: at
// startup, at join and in the CLI; never on the request path). Private keys are written 0600
// in directories made 0700.
//
// A node's data_dir (cluster.data_dir):
//   tls/ca.pem         the cluster CA's certificate (every node)
//   tls/manager-key    the manager key (managers only): it opens the signing root's key,
//                      which the replicated state keeps sealed with it (tls/pki.h, seal_key)
//   tls/ca-key.pem     the root's private key, only for an external CA (`cluster init
//                      --external-ca`): the operator puts it on the managers that should sign
//   tls/node.pem       this node's certificate: routemesh://<cluster>/<manager|worker>/<id>
//   tls/node-key.pem   its private key (made on this node; never leaves it)
//
// With autolock (`cluster autolock enable`), a manager keeps manager-key and node-key.pem
// encrypted with the cluster's unlock key: manager-key as "locked:" + the manager key wrapped
// with it (tls::wrap_manager_key), node-key.pem as an encrypted PKCS #8 key (tls::seal_key).
// Reading them back needs that key (a node started with --unlock-key-file).
//   tls/admin/         the first manager only: `cluster init`'s admin client credentials
//                      (ca.pem, cert.pem, key.pem), the same files it puts in the CLI's place
//
// The CLI's place (client credentials: ca.pem, cert.pem, key.pem): $ROUTEMESH_CERT_DIR, else
// $XDG_CONFIG_HOME/routemesh, else $HOME/.config/routemesh.

#include "tls/types.h"

#include <boost/system/result.hpp>

#include <string>

namespace routemesh::tls {

struct NodeCredentials {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string manager_key;  // "" = not a manager (or a cluster with an external CA)
  std::string ca_key_pem;   // "" = no CA key in a file (the usual case: it is in the state)
  // Autolock: the unlock key that manager-key and node-key.pem are encrypted with on disk
  // ("" = written in clear). Kept in memory only, never written.
  std::string unlock_key;
};

struct ClientCredentials {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

// data_dir + "/tls".
std::string tls_dir(const std::string& data_dir);

// Writes the node's files, keys 0600; manager-key and ca-key.pem are removed when their field is
// empty. Errors are the errno of the
// first write that failed (as an error_code of the system category).
boost::system::result<void> write_node_credentials(const std::string& data_dir,
                                                   const NodeCredentials& credentials);
// Renewal: replaces node.pem and node-key.pem with a new pair (the key encrypted with
// `unlock_key` unless it is ""). The current key file is kept in node-key.pem.old until the new
// certificate is written, so a crash between the two writes leaves a pair
// read_node_credentials can still use (the old certificate with its old key).
boost::system::result<void> renew_node_credentials(const std::string& data_dir,
                                                   const std::string& cert_pem,
                                                   const std::string& key_pem,
                                                   const std::string& unlock_key);
// errc::missing_file when tls/node.pem is absent (a node that never joined, or a data_dir from
// before the cluster had a CA), errc::io_error when a file cannot be read; manager-key and
// ca-key.pem are optional. The contents are not checked here (see check_certificate), except that a
// node-key.pem that does not pair with node.pem is replaced by node-key.pem.old when that one
// does (a renewal cut short). Locked files (autolock) are opened with `unlock_key`:
// errc::locked when it is "", errc::wrong_unlock_key when it does not open them; the result's
// unlock_key is `unlock_key` when the files were locked, "" when they were in clear.
boost::system::result<NodeCredentials> read_node_credentials(const std::string& data_dir,
                                                             const std::string& unlock_key);

// The default place of the CLI's credentials, from the environment's values (null = unset or
// empty): `cert_dir` ($ROUTEMESH_CERT_DIR), else `xdg_config_home`/routemesh, else
// `home`/.config/routemesh; "" when none is set.
std::string default_client_dir(const char* cert_dir, const char* xdg_config_home, const char* home);

// The three files of a client credentials directory.
struct ClientFiles {
  std::string ca;    // DIR/ca.pem
  std::string cert;  // DIR/cert.pem
  std::string key;   // DIR/key.pem
};
ClientFiles client_files(const std::string& dir);

boost::system::result<void> write_client_credentials(const std::string& dir,
                                                     const ClientCredentials& credentials);

// One file's text; errc::missing_file / errc::io_error.
boost::system::result<std::string> read_credential_file(const std::string& path);

}  // namespace routemesh::tls
