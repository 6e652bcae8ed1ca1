# SPDX-License-Identifier: MIT
"""One vpsd for an integration test: its rule file and vps.conf written into
a fresh temporary directory, started with its log in a file there (an unread
pipe would fill up and block it), stopped with SIGTERM (and killed by
taplib at exit whatever happens)."""
import os, subprocess

import taplib
from postfixlib import wait_listening

VPSD = os.environ["VPSD"]


class Vpsd:
    def __init__(self, conf, rules, env=None, mode=None):
        """conf: the text of vps.conf (relative paths are the directory's);
        rules: the text of rules.vsl; mode: of the directory (daemons that
        switch user, peers that drop to theirs)."""
        self.dir = taplib.tmpdir()
        if mode is not None:
            os.chmod(self.dir, mode)
        self.conf = os.path.join(self.dir, "vps.conf")
        self.log_path = os.path.join(self.dir, "vpsd.log")
        with open(os.path.join(self.dir, "rules.vsl"), "w") as f:
            f.write(rules)
        with open(self.conf, "w") as f:
            f.write(conf)
        self.env = env
        self.proc = None

    def start(self, wait_port=None):
        """Start; with wait_port, return once it accepts connections there."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([VPSD, "-c", self.conf], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env)
        taplib._procs.append(self.proc)
        if wait_port:
            try:
                wait_listening(wait_port, alive=lambda: self.proc.poll() is None)
            except AssertionError as e:
                raise AssertionError(f"vpsd did not listen on {wait_port} ({e}): "
                                     f"{self.log()[-2000:]}") from None
        return self

    def log(self):
        return taplib.read_text(self.log_path)

    def stop(self, timeout=30):
        """SIGTERM and wait: the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)
