# SPDX-License-Identifier: MIT
"""Real mail peers for the integration tests and benchmarks: a sandboxed
Postfix, smtp-sink as final destination, swaks as scripted client.

Recipe and verified Postfix behaviours: TESTING.md of the design notes.
Everything runs as root (tests and CI do) on 127.0.0.1 with ports picked at
run time, in directories the caller gives, so several instances and several
test runs can share the machine.  Every Postfix and smtp-sink started here is
remembered and stopped by stop_all(), which also runs at interpreter exit;
tests should still stop them (or use them as context managers).

    free_port() -> int
    wait_listening(port, timeout=10)
    SmtpSink(dir, port=None, hard_reject=(), soft_reject=(), disconnect=(),
             hard_reply=None, soft_reply=None, dump=True, counters=False,
             extra_args=()) -> .start() .stop() .port .messages()
             .wait_messages(n, timeout) .received() (the -c counter)
    SinkMessage: .path .mail_from .mail_args .rcpts .rcpt_args .helo
                 .client_addr .message (header + body as received)
                 .headers .body .header(name)
    Postfix(dir, relay_port=None, main_cf_extra=None, master_smtpd_args=None)
             -> .start() .stop() .set_main(k, v) .reload() .port .config_dir
             .queue_dir .master_pid() .pids() .hold_queue() .queue_ids()
             .postcat(qid, *flags) .wait_queue_empty(timeout) .log()
             .wait_log(regex, timeout) .postconf(name)
    swaks(port, **kw) -> (exit code, transcript)
    replies(transcript, command) / reply_to(transcript, command)
             -> (code, text) of the server's answer to that client command;
    banner_reply, ehlo_reply, mail_reply, rcpt_reply, data_reply, eod_reply
"""
import atexit, os, re, shlex, signal, socket, subprocess, time
import taplib  # shares the log helpers; tests put this directory on sys.path

POSTFIX_USER = "postfix"
# Service lines of Debian's master.cf we keep (chroot "n": the sandbox has no
# chroot tree); the smtpd line is ours.  Local delivery stays defined because
# Postfix refers to it, even though nothing here is delivered locally.
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=postfix/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_running = []  # Postfix and SmtpSink objects not yet stopped


def stop_all():
    """Stop every Postfix and smtp-sink this module started and that is still running."""
    for obj in list(_running):
        try:
            obj.stop()
        except Exception:
            pass


taplib.on_exit(stop_all)
free_port = taplib.free_port


def _listening_ports():
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def is_listening(port):
    return port in _listening_ports()


def wait_listening(port, timeout=10, alive=None):
    """Wait until something listens on port.  Looks at /proc/net/tcp rather
    than connecting, so the server sees no stray session.  alive: optional
    callable; when it returns False the wait fails at once."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if is_listening(port):
            return
        if alive is not None and not alive():
            raise AssertionError(f"process for port {port} died before listening")
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has exited; only its parent has not reaped it yet.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _open_to_postfix(path):
    """Let the postfix user reach path: mkdtemp makes 0700 root directories,
    and Postfix opens its data directory and smtp-sink its dump files as the
    postfix user.  Ancestors inside the system temporary directory get the
    search bit too; anywhere else they must be reachable already."""
    import tempfile
    os.chmod(path, 0o755)
    top = os.path.realpath(tempfile.gettempdir())
    cur = os.path.dirname(os.path.realpath(path))
    while cur.startswith(top + os.sep):
        mode = os.stat(cur).st_mode
        if not mode & 0o001:
            os.chmod(cur, (mode & 0o7777) | 0o011)
        cur = os.path.dirname(cur)


# ---------------------------------------------------------------- smtp-sink

class SinkMessage:
    """One transaction dumped by smtp-sink -d."""

    def __init__(self, path, text):
        self.path = path
        self.client_addr = self.helo = self.mail_args = None
        self.rcpt_args = []
        lines = text.split("\n")
        i = 0
        # smtp-sink's own header lines end with its three-line Received:.
        while i < len(lines):
            line = lines[i]
            name, _, value = line.partition(": ")
            if name == "X-Client-Addr":
                self.client_addr = value
            elif name == "X-Helo-Args":
                self.helo = value
            elif name == "X-Mail-Args":
                self.mail_args = value
            elif name == "X-Rcpt-Args":
                self.rcpt_args.append(value)
            elif name == "Received":
                i += 1
                while i < len(lines) and lines[i][:1] in ("\t", " "):
                    i += 1
                break
            i += 1
        rest = lines[i:]
        # The dump ends with one empty line of its own after the message.
        if rest and rest[-1] == "":
            rest = rest[:-1]
        if rest and rest[-1] == "":
            rest = rest[:-1]
        self.message = "\n".join(rest) + "\n"
        self.headers, _, self.body = self.message.partition("\n\n")
        self.headers += "\n"
        self.mail_from = _first_path(self.mail_args)
        self.rcpts = [_first_path(a) for a in self.rcpt_args]

    def header(self, name):
        """The first value of header name (unfolded), or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        out, inside = [], False
        for line in self.headers.split("\n"):
            if line[:1] in (" ", "\t"):
                if inside:
                    out[-1] += " " + line.strip()
                continue
            n, sep, v = line.partition(":")
            inside = bool(sep) and n.lower() == name.lower()
            if inside:
                out.append(v.strip())
        return out

    def __repr__(self):
        return f"SinkMessage(from={self.mail_from!r}, rcpts={self.rcpts!r}, {len(self.message)} bytes)"


def _first_path(args):
    if args is None:
        return None
    m = re.match(r"\s*<([^>]*)>", args)
    return m.group(1) if m else args.split()[0]


class SmtpSink:
    """smtp-sink on 127.0.0.1:port as the final destination.

    dump: write each transaction to DIR/msgs/%H%M%S.RANDOM (files appear at
    RCPT and are filled at end of DATA); messages() parses the complete ones.
    counters: run with -c and read its "mesg=N" counter (cheap; benchmarks).
    hard_reject / soft_reject / disconnect: SMTP commands ("MAIL", "RCPT",
    "DATA", ".", ...) answered 5xx (-f) / 4xx (-r) / with a silent disconnect
    (-q); hard_reply / soft_reply change those replies (-B / -b)."""

    def __init__(self, dir, port=None, hard_reject=(), soft_reject=(), disconnect=(),
                 hard_reply=None, soft_reply=None, dump=True, counters=False, extra_args=()):
        self.dir = dir
        self.port = port or free_port()
        self.dump_dir = os.path.join(dir, "msgs")
        self.out_path = os.path.join(dir, "smtp-sink.out")
        args = ["smtp-sink", "-u", POSTFIX_USER]
        if dump:
            args += ["-d", self.dump_dir + "/%H%M%S."]
        if counters:
            args.append("-c")
        if hard_reject:
            args += ["-f", ",".join(hard_reject)]
        if soft_reject:
            args += ["-r", ",".join(soft_reject)]
        if disconnect:
            args += ["-q", ",".join(disconnect)]
        if hard_reply:
            args += ["-B", hard_reply]
        if soft_reply:
            args += ["-b", soft_reply]
        args += list(extra_args)
        self.args = args
        self.proc = None

    def start(self, timeout=10):
        _open_to_postfix(self.dir)
        os.makedirs(self.dump_dir, exist_ok=True)
        os.chown(self.dump_dir, _postfix_uid(), -1)
        for attempt in range(3):
            out = open(self.out_path, "wb")
            self.proc = subprocess.Popen(self.args + [f"127.0.0.1:{self.port}", "1000"],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            out.close()
            _running.append(self)
            try:
                wait_listening(self.port, timeout, alive=lambda: self.proc.poll() is None)
                return self
            except AssertionError:
                self.stop()
                if "Address already in use" not in self.output():
                    raise AssertionError(f"smtp-sink did not start: {self.output()}")
                self.port = free_port()  # lost the race for the port: another
        raise AssertionError(f"smtp-sink: no free port: {self.output()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _running:
            _running.remove(self)

    def output(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def received(self):
        """Messages received so far (end of DATA seen), from the -c counter."""
        m = re.findall(r"mesg=(\d+)", self.output())
        return int(m[-1]) if m else 0

    def messages(self):
        """Complete dumped transactions, oldest first."""
        out = []
        try:
            names = os.listdir(self.dump_dir)
        except FileNotFoundError:
            return out
        for name in names:
            path = os.path.join(self.dump_dir, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            # Empty: transaction in progress (the file is created at RCPT).
            if not data.endswith(b"\n\n"):
                continue
            out.append((mtime, name, SinkMessage(path, data.decode("utf-8", "replace"))))
        out.sort(key=lambda t: (t[0], t[1]))
        return [m for _, _, m in out]

    def wait_messages(self, n=1, timeout=20):
        deadline = time.time() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= n or time.time() >= deadline:
                break
            time.sleep(0.05)
        if len(msgs) < n:
            raise AssertionError(f"smtp-sink got {len(msgs)} of {n} messages in {timeout}s")
        return msgs

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _postfix_uid():
    import pwd
    return pwd.getpwnam(POSTFIX_USER).pw_uid


# ------------------------------------------------------------------ Postfix

def _run_tty(args, timeout=60):
    """Run a Postfix admin command under script(1): they print their errors
    only to a terminal.  Returns (exit code, output)."""
    p = subprocess.run(["script", "-qec", shlex.join(args), "/dev/null"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout.replace("\r\n", "\n") + p.stderr


class Postfix:
    """A sandboxed Postfix instance in dir (config, queue, data, maillog).

    smtpd listens on 127.0.0.1:self.port; mail for anything is relayed to
    [127.0.0.1]:relay_port (an SmtpSink).  main_cf_extra: {name: value}
    appended to main.cf (overrides ours).  master_smtpd_args: extra
    arguments of the smtpd line in master.cf, e.g. "-o smtpd_milters=..."
    (a string or a list)."""

    def __init__(self, dir, relay_port=None, main_cf_extra=None, master_smtpd_args=None):
        self.dir = dir
        self.config_dir = os.path.join(dir, "conf")
        self.queue_dir = os.path.join(dir, "queue")
        self.data_dir = os.path.join(dir, "data")
        self.maillog = os.path.join(dir, "maillog")
        self.port = free_port()
        self.relay_port = relay_port
        self.main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "sandbox.example",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": f"/var, /dev/stdout, {dir}",
            # Tests want a stopped sink retried soon, not after minutes.
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "10s",
        }
        if relay_port is not None:
            self.main["relayhost"] = f"[127.0.0.1]:{relay_port}"
        self.main.update(main_cf_extra or {})
        if isinstance(master_smtpd_args, str):
            master_smtpd_args = shlex.split(master_smtpd_args)
        self.smtpd_args = list(master_smtpd_args or [])
        self._master_pid = None
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            os.makedirs(d, exist_ok=True)
        _open_to_postfix(dir)
        os.chown(self.data_dir, _postfix_uid(), -1)
        self._write_config()

    # -- configuration
    def _write_config(self):
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for k, v in self.main.items():
                f.write(f"{k} = {v}\n")
        smtpd = f"127.0.0.1:{self.port} inet n - n - - smtpd"
        if self.smtpd_args:
            smtpd += "\n  " + " ".join(self.smtpd_args)
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(smtpd + "\n" + _MASTER_SERVICES)

    def set_main(self, key, value):
        """Set one main.cf parameter (takes effect at start or reload())."""
        self.main[key] = value
        self._write_config()

    def postconf(self, name):
        """The value Postfix itself sees for name."""
        p = subprocess.run(["postconf", "-c", self.config_dir, "-h", name], capture_output=True,
                           text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"postconf {name}: {p.stderr}")
        return p.stdout.strip()

    # -- life cycle
    def start(self, timeout=20):
        for attempt in range(3):
            rc, out = _run_tty(["postfix", "-c", self.config_dir, "start"])
            if rc != 0:
                raise AssertionError(f"postfix start exited {rc}: {out}\n{self.log()[-2000:]}")
            pid = self._read_master_pid(timeout)
            self._master_pid = pid
            _running.append(self)
            try:
                wait_listening(self.port, timeout, alive=lambda: _pid_alive(pid))
                return self
            except AssertionError:
                log = self.log()
                self.stop()
                if "Address already in use" not in log:
                    raise AssertionError(f"postfix did not listen on {self.port}: {out}\n{log[-2000:]}")
                # Another program took our port between free_port() and bind.
                self.port = free_port()
                self._write_config()
        raise AssertionError("postfix: no free port after 3 attempts")

    def _read_master_pid(self, timeout):
        path = os.path.join(self.queue_dir, "pid", "master.pid")
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(path) as f:
                    pid = int(f.read().split()[0])
                if _pid_alive(pid):
                    return pid
            except (FileNotFoundError, IndexError, ValueError):
                pass
            time.sleep(0.02)
        raise AssertionError(f"postfix master did not start: {self.log()[-2000:]}")

    def master_pid(self):
        return self._master_pid

    def pids(self):
        """The master and all its live children (every Postfix daemon here:
        there is no chroot and no other parent)."""
        if self._master_pid is None or not _pid_alive(self._master_pid):
            return []
        out = [self._master_pid]
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                    continue
                if ppid == self._master_pid:
                    out.append(int(name))
        return out

    def stop(self, timeout=15):
        """Stop this instance and wait until its master has gone.  Works by
        signal even when the directories were already removed."""
        pid = self._master_pid
        if pid is not None and _pid_alive(pid):
            if os.path.isdir(self.config_dir):
                _run_tty(["postfix", "-c", self.config_dir, "stop"], timeout=timeout + 10)
            else:
                os.kill(pid, signal.SIGTERM)
            deadline = time.time() + timeout
            while _pid_alive(pid) and time.time() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)  # what "postfix stop" does at the end
                except ProcessLookupError:
                    pass
        self._master_pid = None
        if self in _running:
            _running.remove(self)

    def reload(self, settle=1.0):
        """postfix reload, then wait for master to log it and for running
        daemons to take it (they restart at their next request)."""
        before = self.log().count("reload -- version")
        rc, out = _run_tty(["postfix", "-c", self.config_dir, "reload"])
        if rc != 0:
            raise AssertionError(f"postfix reload exited {rc}: {out}")
        deadline = time.time() + 10
        while self.log().count("reload -- version") <= before:
            if time.time() > deadline:
                raise AssertionError(f"postfix did not log its reload: {self.log()[-2000:]}")
            time.sleep(0.05)
        time.sleep(settle)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- queue and log
    def _queue_files(self, subdirs):
        out = []
        for sub in subdirs:
            for root, _, files in os.walk(os.path.join(self.queue_dir, sub)):
                out.extend(files)
        return out

    def hold_queue(self):
        """Queue ids in the hold queue (quarantine, policy HOLD)."""
        return sorted(self._queue_files(["hold"]))

    def queue_ids(self):
        """Queue ids of every message not yet delivered, hold included."""
        return sorted(self._queue_files(["maildrop", "incoming", "active", "deferred", "hold"]))

    def wait_queue_empty(self, timeout=30):
        """Wait until incoming, active and deferred are empty (held messages
        stay where they are and do not count)."""
        deadline = time.time() + timeout
        while True:
            left = self._queue_files(["maildrop", "incoming", "active", "deferred"])
            if not left:
                return
            if time.time() >= deadline:
                raise AssertionError(f"queue not empty after {timeout}s: {left[:10]}")
            time.sleep(0.05)

    def postcat(self, qid, *flags):
        """postcat -q of one queued (e.g. held) message; flags like "-h", "-b", "-e"."""
        p = subprocess.run(["postcat", "-c", self.config_dir, *flags, "-q", qid],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"postcat {qid}: {p.stderr}")
        return p.stdout

    def log(self):
        return taplib.read_text(self.maillog)

    def wait_log(self, pattern, timeout=10, count=1):
        """Wait until the log has count lines matching regex pattern;
        returns the matching lines."""
        return taplib.wait_log_lines(self.log, pattern, timeout, count, "maillog")


# -------------------------------------------------------------------- swaks

def swaks(port, timeout=60, **kw):
    """Run swaks against 127.0.0.1:port.  Keyword arguments become options:
    from_="a@b" -> --from a@b, h_Subject="x" -> --h-Subject x, quit_after="RCPT",
    pipeline=True -> --pipeline, a list value repeats the option.  Defaults:
    --from sender@example.com --to rcpt@example.org.  Returns (exit code,
    transcript)."""
    kw.setdefault("from_", "sender@example.com")
    kw.setdefault("to", "rcpt@example.org")
    args = ["swaks", "--server", f"127.0.0.1:{port}"]
    for k, v in kw.items():
        opt = "--" + k.rstrip("_").replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            args.append(opt)
        elif isinstance(v, (list, tuple)):
            for item in v:
                args += [opt, str(item)]
        else:
            args += [opt, str(v)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def _dialogue(transcript):
    """The transcript as a list of ("C", line) client and ("S", line) server
    lines; swaks marks them " -> " / "<- " (and "<** " for errors, "~>"/"<~"
    under TLS)."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*(->|~>|<-|<~|<\*\*|<~\*) (.*)$", line)
        if not m:
            continue
        if m.group(1) in ("->", "~>"):
            out.append(("C", m.group(2).rstrip("\r\n")))
        else:
            out.append(("S", m.group(2).strip()))
    return out


def _reply_after(dia, i):
    """The (possibly multi-line) server reply starting after index i."""
    lines = []
    for side, text in dia[i + 1:]:
        if side == "C":
            if lines:
                break
            continue
        lines.append(text)
        if re.match(r"^\d{3}(?!-)", text):
            break
    if not lines:
        return None
    code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else None
    return code, "\n".join(lines)


def replies(transcript, command):
    """Every (code, text) the server answered to client lines starting with
    command ("MAIL FROM", "RCPT TO", "DATA", "EHLO", "." for end of data),
    in order.  Assumes swaks without --pipeline (one reply after each command)."""
    dia = _dialogue(transcript)
    out = []
    in_data = False
    for i, (side, text) in enumerate(dia):
        if side != "C":
            continue
        if in_data:
            if text == ".":
                in_data = False
                if command == ".":
                    r = _reply_after(dia, i)
                    if r:
                        out.append(r)
            continue
        if text.upper().startswith(command.upper()) and command != ".":
            r = _reply_after(dia, i)
            if r:
                out.append(r)
        if text.upper() == "DATA":
            r = _reply_after(dia, i)
            in_data = bool(r and r[0] == 354)
    return out


def reply_to(transcript, command):
    """The first reply to command, or None when it was never sent/answered."""
    r = replies(transcript, command)
    return r[0] if r else None


def banner_reply(transcript):
    dia = _dialogue(transcript)
    return _reply_after(dia, -1) if dia and dia[0][0] == "S" else None


def ehlo_reply(transcript):
    return reply_to(transcript, "EHLO") or reply_to(transcript, "HELO")


def mail_reply(transcript):
    return reply_to(transcript, "MAIL FROM")


def rcpt_reply(transcript):
    return reply_to(transcript, "RCPT TO")


def data_reply(transcript):
    return reply_to(transcript, "DATA")


def eod_reply(transcript):
    return reply_to(transcript, ".")
