# SPDX-License-Identifier: MIT
"""mtalib: the servers under test of bench-mta and the instruments that measure them.

    PostfixMaildir(dir)     sandboxed Postfix (tests/integration/postfixlib.py)
                            delivering every recipient in bench.test into the
                            maildir dir/vmail/bench.test/mail/ through virtual(8)
    Vsmtpd(binary, dir)     BUILD/mta/vsmtpd with a vps.conf written here,
                            [delivery] default = maildir:dir/vmail/%d/%l
    PostfixRelay(dir)       the same Postfix relaying everything to its own
                            smtp-sink (relayhost = [127.0.0.1]:SINKPORT)
    VsmtpdRelay(binary, dir)  vsmtpd with [delivery] default =
                            relay:[127.0.0.1]:SINKPORT, its own smtp-sink
    all: .start() .stop() .port .cpu_total() .sampler() .watch() .delivered()
         .wait_idle(timeout) .queue_left() .clear_maildir() .log_tail()
         (.watch(): a select()able counter of arriving messages; .delivered():
         messages at the destination since the last .clear_maildir())
    Sink(dir)               smtp-sink -c (no dump: the sink must stay cheaper
                            than the servers), .watch() follows its counter
    DirWatch(path)          inotify on a maildir new/: counts arriving files
                            without listing the directory (listing 5,000
                            names every few ms would steal CPU from the servers)
    CpuSampler(list_fn)     CPU seconds per component (process or thread name)
                            of a server, sampled from /proc while it runs
    proc_status(pid)        /proc/PID/status as a dict

The recipient of every benchmark message is RCPT (mail@bench.test), so both
servers write into the same relative maildir, vmail/bench.test/mail/.
Everything runs as root, like the tests; every server started here is put on
postfixlib's list, so postfixlib.stop_all() (also run at exit and on SIGTERM)
stops it.
"""
import ctypes, os, pwd, re, signal, struct, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "bench", "milter"))
import postfixlib  # noqa: E402
from postfixlib import Postfix, SmtpSink, free_port, wait_listening  # noqa: E402
from bench_milter import tree_cpu  # noqa: E402
from procstat import proc_status, status_kb  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DOMAIN = "bench.test"
RCPT = "mail@" + DOMAIN
SENDER = "bench@example.com"


# ------------------------------------------------------------------- /proc

def _stat_fields(path):
    """(comm, fields after comm) of a /proc stat file, or None if gone."""
    try:
        with open(path) as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    head, _, tail = raw.rpartition(")")
    return head.partition("(")[2], tail.split()



def process_cpu(pid):
    """utime+stime in seconds of a process (all its threads, exited ones
    included: the kernel keeps their time in the thread group's totals)."""
    s = _stat_fields(f"/proc/{pid}/stat")
    if s is None:
        return 0.0
    return (int(s[1][11]) + int(s[1][12])) / CLK_TCK


def postfix_processes(master):
    """{(pid, starttime): (comm, own CPU ticks)} of Postfix's master and its
    children (every daemon here: no chroot, no other parent)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        s = _stat_fields(f"/proc/{name}/stat")
        if s is None:
            continue
        comm, f = s
        pid = int(name)
        if pid == master or int(f[1]) == master:
            out[(pid, f[19])] = (comm, int(f[11]) + int(f[12]))
    return out


def process_threads(pid):
    """{(tid, starttime): (thread name, CPU ticks)} of one process."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        s = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        if s is not None:
            comm, f = s
            out[(int(tid), f[19])] = (comm, int(f[11]) + int(f[12]))
    return out


class CpuSampler:
    """CPU per component of a server during one run, from samples of
    list_fn() (a {key: (component, ticks)} map, key unique per process or
    thread life).  A process or thread that exits between two samples loses
    its last interval; the caller reports the total from the parent's
    counters beside it, so that loss shows as "exited/unattributed"."""

    def __init__(self, list_fn, interval=0.2):
        self.list_fn = list_fn
        self.interval = interval
        self.base = {}
        self.last = {}
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        for key, val in self.list_fn().items():
            self.last[key] = val

    def start(self):
        self.base = self.list_fn()
        self.last = dict(self.base)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self):
        """{component: CPU seconds} over the run."""
        self._stop.set()
        self._thread.join()
        self._sample()
        out = {}
        for key, (comm, ticks) in self.last.items():
            used = ticks - self.base.get(key, (comm, 0))[1]
            out[comm] = out.get(comm, 0) + used / CLK_TCK
        return out


# ----------------------------------------------------------------- inotify

_IN_MOVED_TO, _IN_CREATE, _IN_Q_OVERFLOW, _IN_ISDIR = 0x80, 0x100, 0x4000, 0x40000000
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000
_libc = ctypes.CDLL(None, use_errno=True)
_MESG = re.compile(rb"mesg=(\d+)")
_EVENT = struct.Struct("iIII")


class DirWatch:
    """Counts files appearing in one directory (link or rename into it,
    which is how both servers finish a maildir delivery)."""

    def __init__(self, path):
        self.fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), _IN_MOVED_TO | _IN_CREATE)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}")
        self.count = 0
        self.overflow = False

    def fileno(self):
        return self.fd

    def read(self):
        """Consume pending events; returns the new total count."""
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.count
            off = 0
            while off + _EVENT.size <= len(buf):
                _, mask, _, ln = _EVENT.unpack_from(buf, off)
                off += _EVENT.size + ln
                if mask & _IN_Q_OVERFLOW:
                    self.overflow = True
                elif mask & (_IN_MOVED_TO | _IN_CREATE) and not mask & _IN_ISDIR:
                    self.count += 1

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SinkWatch:
    """Follows smtp-sink's -c counter ("mesg=N", updated at every end of
    DATA) in its output file: inotify IN_MODIFY on the file (the kernel folds
    repeated events into one, so the queue cannot overflow), then only the
    bytes written since the last read are parsed.  count = the counter
    minus base (its value at the server's last .clear_maildir())."""

    _IN_MODIFY = 0x2
    _TAIL = 64  # bytes kept across reads: a "mesg=N" split by a read

    def __init__(self, path, base):
        self.fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, os.fsencode(path), self._IN_MODIFY) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}")
        self.f = open(path, "rb")
        self.f.seek(0, 2)
        self.base = base
        self.carry = b""
        self.count = 0
        self.overflow = False  # the file is re-read: a lost event loses nothing

    def fileno(self):
        return self.fd

    def read(self):
        while True:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                break
        data = self.carry + self.f.read()
        # smtp-sink writes each counter line in one write(2): a number at
        # the end of what we read is complete.
        m = _MESG.findall(data)
        if m:
            self.count = int(m[-1]) - self.base
        self.carry = data[-self._TAIL:]
        return self.count

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.f.close()


def count_files(path):
    try:
        return sum(1 for e in os.scandir(path) if e.is_file())
    except FileNotFoundError:
        return 0


def clear_dir_files(path):
    for e in os.scandir(path):
        if e.is_file():
            os.unlink(e.path)


def _make_maildir(root, uid, gid):
    """root/bench.test/mail/{tmp,new,cur} owned by uid:gid; returns new/."""
    for sub in ("", DOMAIN, os.path.join(DOMAIN, "mail")):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        os.chown(d, uid, gid)
        os.chmod(d, 0o755)
    md = os.path.join(root, DOMAIN, "mail")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
        os.chown(os.path.join(md, sub), uid, gid)
        os.chmod(os.path.join(md, sub), 0o700)
    return os.path.join(md, "new")


# ----------------------------------------------------------------- servers

class _MaildirMixin:
    """What both servers do with the maildir they deliver into (new_dir)."""

    def clear_maildir(self):
        clear_dir_files(self.new_dir)

    def watch(self):
        return DirWatch(self.new_dir)

    def delivered(self):
        return count_files(self.new_dir)

    def sink_cpu(self):
        return 0.0


class PostfixMaildir(_MaildirMixin):
    """Postfix with its normal durable queue (cleanup fsyncs every queue
    file before the 250) and local delivery into one maildir through
    virtual(8), which fsyncs the file before linking it into new/."""

    name = "postfix"

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        pw = pwd.getpwnam(postfixlib.POSTFIX_USER)
        self.vmail = os.path.join(dir, "vmail")
        self.new_dir = _make_maildir(self.vmail, pw.pw_uid, pw.pw_gid)
        self.pf = Postfix(os.path.join(dir, "pf"), main_cf_extra={
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": self.vmail,
            # A trailing "/" means maildir.
            "virtual_mailbox_maps": f"static:{DOMAIN}/mail/",
            "virtual_uid_maps": f"static:{pw.pw_uid}",
            "virtual_gid_maps": f"static:{pw.pw_gid}",
            "virtual_minimum_uid": str(min(pw.pw_uid, 100)),
        })

    @property
    def port(self):
        return self.pf.port

    def start(self):
        self.pf.start()
        return self

    def stop(self):
        self.pf.stop()

    def main_pid(self):
        return self.pf.master_pid()

    def alive(self):
        return postfixlib._pid_alive(self.pf.master_pid() or 0)

    def cpu_total(self):
        # master, live daemons and (through master's cutime) exited ones
        return tree_cpu(self.pf.master_pid())

    def sampler(self):
        master = self.pf.master_pid()
        return CpuSampler(lambda: postfix_processes(master))

    def queue_left(self):
        return len(self.pf._queue_files(["maildrop", "incoming", "active", "deferred"]))

    def wait_idle(self, timeout=60):
        self.pf.wait_queue_empty(timeout)

    def rss_kb(self):
        return sum(status_kb(proc_status(p), "VmRSS") for p in self.pf.pids())

    def log_tail(self, n=2000):
        return self.pf.log()[-n:]


VSMTPD_CONF = """\
# bench-mta: vsmtpd receiving into its durable queue, delivering into maildir
[vpsd]
rules = {dir}/rules.vsl
workers = {workers}
[log]
level = {log_level}
[vsmtpd]
listen = 127.0.0.1:{port}
hostname = mx.bench.test
max_connections = {max_connections}
# The generator is one address: no per-IP limit may throttle it
# (127.0.0.0/8 is in the default limit_exceptions anyway).
max_connections_per_ip = 0
[queue]
dir = {dir}/queue
[quarantine]
dir = {dir}/quarantine
[export]
archive = {dir}/exports
[delivery]
default = maildir:{vmail}/%d/%l
"""


class Vsmtpd(_MaildirMixin):
    name = "vsmtpd"

    def __init__(self, binary, dir, rules_text, workers=2, max_connections=1000,
                 log_level="info", wrapper=()):
        self.binary = binary
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        os.chmod(dir, 0o755)
        self.vmail = os.path.join(dir, "vmail")
        self.new_dir = _make_maildir(self.vmail, 0, 0)
        self.queue_dir = os.path.join(dir, "queue")
        self.conf = os.path.join(dir, "vps.conf")
        self.log_path = os.path.join(dir, "vsmtpd.log")
        self.settings = {"dir": dir, "vmail": self.vmail, "workers": workers,
                         "max_connections": max_connections, "log_level": log_level}
        self.wrapper = list(wrapper)
        with open(os.path.join(dir, "rules.vsl"), "w") as f:
            f.write(rules_text)
        self.port = None
        self.proc = None

    def _write_conf(self):
        with open(self.conf, "w") as f:
            f.write(VSMTPD_CONF.format(port=self.port, **self.settings))

    def check(self):
        """vsmtpd --check on the config; raises with its output on failure."""
        self.port = self.port or free_port()
        self._write_conf()
        p = subprocess.run([self.binary, "-c", self.conf, "--check"], capture_output=True,
                           text=True, timeout=60, cwd=self.dir)
        if p.returncode != 0:
            raise RuntimeError(f"vsmtpd --check failed ({p.returncode}): {p.stdout}{p.stderr}")

    def start(self, timeout=30):
        for _ in range(3):
            self.port = free_port()
            self._write_conf()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.wrapper + [self.binary, "-c", self.conf],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
            log.close()
            postfixlib._running.append(self)
            try:
                wait_listening(self.port, timeout, alive=lambda: self.proc.poll() is None)
                return self
            except AssertionError:
                self.stop()
                if "in use" not in self.log_tail():
                    raise RuntimeError(f"vsmtpd did not listen on {self.port}:\n{self.log_tail()}")
        raise RuntimeError("vsmtpd: no free port after 3 attempts")

    def stop(self, timeout=20):
        """SIGTERM (vsmtpd drains), then SIGKILL after timeout."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in postfixlib._running:
            postfixlib._running.remove(self)

    def main_pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_total(self):
        return process_cpu(self.proc.pid)

    def sampler(self):
        pid = self.proc.pid
        return CpuSampler(lambda: process_threads(pid))

    def queue_left(self):
        """Messages still in the spool (committed, not yet fully delivered)."""
        left = 0
        for sub in ("incoming", "active", "deferred"):
            try:
                left += sum(1 for n in os.listdir(os.path.join(self.queue_dir, sub))
                            if n.endswith(".json"))
            except FileNotFoundError:
                pass
        return left

    def wait_idle(self, timeout=60):
        deadline = time.time() + timeout
        while self.queue_left():
            if not self.alive():
                raise AssertionError(f"vsmtpd exited ({self.proc.returncode}) with "
                                     f"{self.queue_left()} messages queued")
            if time.time() > deadline:
                raise AssertionError(f"vsmtpd queue not empty after {timeout}s: "
                                     f"{self.queue_left()} messages")
            time.sleep(0.05)

    def rss_kb(self):
        return status_kb(proc_status(self.proc.pid), "VmRSS")

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


# ----------------------------------------------------------- relay topology

class Sink:
    """The final destination of the relay profiles: smtp-sink -c on a free
    port (no dump: writing every message would make the sink the bottleneck
    on 2 cores).  It counts every end of DATA, so it sees every message; a
    count above the number sent means duplicates."""

    def __init__(self, dir):
        os.makedirs(dir, exist_ok=True)
        self.sink = SmtpSink(dir, dump=False, counters=True)
        self.base = 0

    @property
    def port(self):
        return self.sink.port

    def start(self):
        self.sink.start()
        return self

    def stop(self):
        self.sink.stop()

    def alive(self):
        return self.sink.proc is not None and self.sink.proc.poll() is None

    def received(self):
        return self.sink.received()

    def reset(self):
        self.base = self.received()

    def delivered(self):
        return self.received() - self.base

    def watch(self):
        return SinkWatch(self.sink.out_path, self.base)

    def cpu(self):
        return process_cpu(self.sink.proc.pid) if self.alive() else 0.0


class _RelayMixin:
    """Arrivals counted at the sink instead of a maildir."""

    def watch(self):
        return self.sink.watch()

    def delivered(self):
        return self.sink.delivered()

    def clear_maildir(self):
        self.sink.reset()

    def sink_cpu(self):
        return self.sink.cpu()


class PostfixRelay(_RelayMixin, PostfixMaildir):
    """Postfix as a relay: smtpd -> cleanup (queue file fsync'ed) -> qmgr ->
    smtp(8) to relayhost = [127.0.0.1]:SINKPORT, default settings (smtp
    connection cache on demand, destination concurrency 20)."""

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.sink = Sink(os.path.join(dir, "sink"))
        self.new_dir = None
        self.pf = Postfix(os.path.join(dir, "pf"), relay_port=self.sink.port, main_cf_extra={
            # bench.test is a remote domain here; mynetworks (127.0.0.0/8)
            # permits the relaying, as rules-small.vsl does for vsmtpd.
            "relay_domains": "",
        })

    def start(self):
        self.sink.start()
        if self.sink.port != self.pf.relay_port:  # the sink lost its port race
            raise RuntimeError("smtp-sink changed its port after Postfix was configured")
        self.pf.start()
        return self

    def stop(self):
        self.pf.stop()
        self.sink.stop()

    def alive(self):
        return PostfixMaildir.alive(self) and self.sink.alive()


class VsmtpdRelay(_RelayMixin, Vsmtpd):
    """vsmtpd relaying everything to its own smtp-sink."""

    def __init__(self, binary, dir, rules_text, **kw):
        Vsmtpd.__init__(self, binary, dir, rules_text, **kw)
        self.sink = Sink(os.path.join(dir, "sink"))
        self.new_dir = None

    def _write_conf(self):
        text = VSMTPD_CONF.format(port=self.port, **self.settings)
        route = f"default = maildir:{self.vmail}/%d/%l"
        assert route in text, "VSMTPD_CONF changed: update VsmtpdRelay"
        text = text.replace(route, f"default = relay:[127.0.0.1]:{self.sink.port}")
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self, timeout=30):
        if not self.sink.alive():
            self.sink.start()
        return Vsmtpd.start(self, timeout)

    def stop(self, timeout=20):
        Vsmtpd.stop(self, timeout)
        self.sink.stop()

    def alive(self):
        return Vsmtpd.alive(self) and self.sink.alive()
