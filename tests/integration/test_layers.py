"""The source tree follows the layering in docs/layout.md: scripts/check_layers.py finds no
include a folder may not make and no Asio or socket header reachable from a pure core, and
its self-test (violations planted in a temporary copy) shows that it would find them."""
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "check_layers.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=120)


class LayersTest(unittest.TestCase):
    def test_the_checker_catches_planted_violations(self):
        p = run("--self-test")
        self.assertEqual(p.returncode, 0, f"check_layers.py --self-test failed:\n{p.stdout}{p.stderr}")

    def test_the_tree_follows_the_layering(self):
        p = run()
        self.assertEqual(p.returncode, 0, f"layering violations:\n{p.stdout}{p.stderr}")


if __name__ == "__main__":
    unittest.main()
