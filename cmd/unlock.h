#pragma once
// Handing a locked manager its unlock key while it waits (cluster autolock), as `docker swarm
// unlock` does for a locked Swarm manager. A manager whose keys are locked and that was given
// no key (no --unlock-key-file, no $ROUTEMESH_UNLOCK_KEY, no terminal to ask on) does not exit:
// it logs that it waits and listens on data_dir/unlock.sock, a Unix socket that only whoever
// may read the data_dir can reach (0600 in the data_dir). `routemesh cluster unlock --config
// FILE` sends a key there (from --unlock-key-file, $ROUTEMESH_UNLOCK_KEY or the terminal) and
// prints the answer. Each key is checked like one given at start (check_unlock); a refusal
// leaves the manager waiting.
//
// The exchange, one per connection: the client sends the key and a newline; the manager
// answers "ok\n" and goes on starting, or "refused: WHY\n" and waits for the next try.

#include <string>

namespace routemesh::cmd {

// data_dir/unlock.sock.
std::string unlock_socket_path(const std::string& data_dir);

enum class UnlockWait {
  unlocked,  // `key` opens the keys
  stopped,   // SIGTERM or SIGINT came first
  failed,    // the socket could not be made (logged)
};

struct UnlockResult {
  UnlockWait outcome = UnlockWait::failed;
  std::string key;
};

// Waits for `routemesh cluster unlock` on the socket; `why` is check_unlock's message, logged
// with how to unlock. The socket is removed when the wait ends.
UnlockResult wait_for_unlock(const std::string& data_dir, const std::string& why);

// `routemesh cluster unlock`: the exit code (0: the manager took the key; 1: refused, or no
// manager waits; 2: a bad configuration or key, each message naming its source).
int run_cluster_unlock(const std::string& config_path, const std::string& unlock_key_file);

}  // namespace routemesh::cmd
