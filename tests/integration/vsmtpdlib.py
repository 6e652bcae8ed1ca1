# SPDX-License-Identifier: MIT
"""vsmtpd for the integration tests: a temporary directory with vps.conf and
rules.vsl, free ports, start/stop, a raw SMTP client (plain and TLS), the
spool, the maildirs and the log; test certificates and password files.

Everything runs on 127.0.0.1 with ports picked at run time, in a directory
from taplib.tmpdir() (removed at the end of the run).  Every vsmtpd started
here is stopped by stop_all(), which also runs at exit and on SIGTERM.

    VSMTPD, VPSCTL          program paths from the environment (tests/meson.build)
    free_port() -> int
    Vsmtpd(rules="", settings=None, conf=None, dir=None)
        The default vps.conf is the one of the vsmtpd spec (hostname mx.test,
        queue = DIR/queue, [delivery] default = maildir:DIR/mail/%d/%l, log
        level debug to stderr = DIR/vsmtpd.log).  settings = {"group": {"key":
        value}} changes it (value None removes the key); conf = a whole
        vps.conf text instead.  In both, {port} {submission_port}
        {submissions_port} and {dir} are replaced (listen_submission(s) are
        only there when a setting names them).
        .start(timeout=10) -> self   .stop(timeout=10) -> exit status
        .kill9()   .alive()   .pid   .dir   .conf_path   .rules_path   .log_path
        .write_config() (what start() does first)   .conf_text() -> str   .mail_dir
        .port   .submission_port   .submissions_port
        .log() -> str   .wait_log(regex, timeout=10, count=1) -> lines
        .smtp(port=None, **SmtpClient kwargs) -> SmtpClient (greeting read)
        .send_mail(sender, rcpts, message, ...) -> (final Reply, queue id or None)
        .queue_dir   .queue_ids(area="incoming")   .queue_files(area)
        .envelope(id, area="incoming") -> dict   .queued_message(id, area) -> bytes
        .wait_queued(id, timeout=10) -> dict (the envelope, once committed)
        .maildir(rcpt) -> DIR/mail/DOMAIN/LOCAL
        .maildir_messages(rcpt) -> [bytes], by delivery time
        .wait_maildir(rcpt, count=1, timeout=10) -> [bytes]   .all_delivered() -> [paths]
        .rss_kb()   .hwm_kb()          VmRSS / VmHWM of the vsmtpd process
        .ctl(*args, ok=True) -> (rc, stdout, stderr)   vpsctl -c THIS_CONF ARGS
        .check() -> (rc, output)                          vsmtpd -c THIS_CONF --check
    SmtpClient(port, host="127.0.0.1", tls=False, server_name=None, timeout=10,
               greeting=True, context=None)
        .greeting (Reply)   .send(bytes | str)   .reply(timeout=None) -> Reply
        .replies(n) -> [Reply]   .cmd(line) -> Reply   .ehlo(name) -> Reply
        .starttls(server_name=None, context=None) -> Reply (then TLS is on)
        .wrap_tls(server_name=None, context=None)   handshake on the socket now
        .closed(timeout=5) -> bool (the server closed: EOF or reset)
        .pending() -> bytes received and not parsed yet   .close()
        .read_available(wait=0.3) -> bytes the server sends within wait (unparsed)
    Reply: .code .enhanced .lines (texts after "NNN-"/"NNN ") .text .raw;
           "ehlo keywords": .keywords() -> {"SIZE": "10240", "PIPELINING": "", ...}
    SmtpClosed (an AssertionError): the server closed before a whole reply
    make_cert(dir, cn, names=(), name=None) -> (cert_path, key_path)
    make_passwd(path, {user: password}) -> path   (SHA-512 crypt via openssl passwd -6)
    tls_context(**) -> ssl.SSLContext that does not verify (test certificates)
    queue_id(reply) -> ID of "250 2.0.0 Ok: queued as ID" (AssertionError otherwise)
    qid_log(qid) -> regex for the queue id in front of a log event: "QID: " (the
           spec's form) or the structured "id=QID ... " prefix
    crlf(text_or_bytes) -> bytes with CRLF line ends;  dot_stuff(bytes) -> bytes
    find_message([bytes], needle) -> the one message containing needle
    strip_trace(bytes) -> the message without the leading Return-Path,
           Delivered-To and Received header fields vsmtpd adds
"""
import atexit, json, os, re, signal, socket, ssl, subprocess, time

import taplib

VSMTPD = os.environ.get("VSMTPD", "")
VPSCTL = os.environ.get("VPSCTL", "")

HOSTNAME = "mx.test"
QUEUE_ID_RE = re.compile(r"queued as ([0-9A-F]{16})\b")

_running = []


def stop_all():
    """Stop every vsmtpd this module started that still runs."""
    for v in list(_running):
        try:
            v.stop(timeout=5)
        except Exception:
            pass


taplib.on_exit(stop_all)
free_port = taplib.free_port


def _listening(port):
    """Is a socket in LISTEN state on port?  Read from /proc so that the
    server sees no stray connection (it would count for per-IP limits)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def crlf(data):
    """data (str or bytes) with every line end as CRLF."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return re.sub(rb"\r?\n", b"\r\n", data)


def dot_stuff(data):
    """SMTP transparency (RFC 5321 4.5.2): a line starting with "." gets one more."""
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", data)
    return out


def queue_id(reply):
    m = QUEUE_ID_RE.search(reply.text) if reply.code == 250 else None
    if not m:
        raise AssertionError(f"not a '250 ... queued as ID' reply: {reply}")
    return m.group(1)


def qid_log(qid):
    return rf"(?:\b{qid}: |\bid={qid}\b.*?)"


def find_message(messages, needle):
    """The one message (bytes) of a list that contains needle (bytes or str)."""
    if isinstance(needle, str):
        needle = needle.encode("utf-8")
    hits = [m for m in messages if needle in m]
    if len(hits) != 1:
        raise AssertionError(f"{len(hits)} messages contain {needle!r} (want 1) of {len(messages)}")
    return hits[0]


def strip_trace(data):
    """Drop the trace fields a delivery puts on top: Return-Path,
    Delivered-To, Received (with their continuation lines)."""
    lines = data.split(b"\n")
    i = 0
    while i < len(lines):
        name = lines[i].split(b":", 1)[0].lower()
        if name not in (b"return-path", b"delivered-to", b"received"):
            break
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\n".join(lines[i:])


# ------------------------------------------------------------------ replies

def expect(reply, code, text=None, enhanced=None):
    """reply has code, and enhanced and text when given (text: a string to
    match exactly, or a compiled regex to search)."""
    assert reply.code == code, f"expected {code}, got {reply}"
    if enhanced is not None:
        assert reply.enhanced == enhanced, f"expected {enhanced}, got {reply}"
    if text is not None:
        if hasattr(text, "search"):
            assert text.search(reply.text), f"expected /{text.pattern}/, got {reply}"
        else:
            assert reply.text == text, f"expected {code} {text!r}, got {reply}"


class SmtpClosed(AssertionError):
    """The server closed the connection before a whole reply."""


class Reply:
    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines
        self.raw = raw
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)", lines[0]) if lines else None
        self.enhanced = m.group(1) if m else None
        self.text = "\n".join(lines)

    def keywords(self):
        """EHLO reply: {KEYWORD: "params"} of every line after the first."""
        out = {}
        for line in self.lines[1:]:
            k, _, v = line.partition(" ")
            out[k.upper()] = v
        return out

    def __str__(self):
        return self.raw.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", " | ")

    __repr__ = __str__


def tls_context(**kw):
    """A client context for the test certificates: no verification.
    Keyword arguments set attributes (minimum_version=..., ...)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


class SmtpClient:
    """A raw SMTP client: send bytes as given, read whole replies."""

    def __init__(self, port, host="127.0.0.1", tls=False, server_name=None, timeout=10,
                 greeting=True, context=None):
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.tls = None
        if tls:
            self.wrap_tls(server_name, context)
        self.greeting = self.reply() if greeting else None

    # -- TLS
    def wrap_tls(self, server_name=None, context=None):
        """Handshake now on the connection (implicit TLS, or after a 220 to
        STARTTLS).  Bytes already received and not parsed are an error: they
        would be plaintext the server sent after its 220."""
        if self.buf:
            raise AssertionError(f"plaintext received before the TLS handshake: {bytes(self.buf)!r}")
        ctx = context or tls_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_name)
        self.tls = self.sock
        return self.sock

    def starttls(self, server_name=None, context=None):
        r = self.cmd("STARTTLS")
        if r.code != 220:
            raise AssertionError(f"STARTTLS refused: {r}")
        self.wrap_tls(server_name, context)
        return r

    # -- I/O
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            chunk = b""
        except ssl.SSLError as e:
            # a TLS alert or a broken record: the server ended the session
            if "timed out" in str(e):
                raise socket.timeout() from e
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf.extend(chunk)
        return bool(chunk)

    def reply(self, timeout=None):
        """One whole reply (all lines of a multi-line one)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        lines, raw, pos = [], b"", 0
        code = None
        while True:
            nl = self.buf.find(b"\n", pos)
            if nl < 0:
                if self.eof:
                    raise SmtpClosed(f"server closed; got {bytes(self.buf)!r}")
                try:
                    self._fill(deadline)
                except socket.timeout:
                    raise AssertionError(f"no whole reply within the timeout; got {bytes(self.buf)!r}")
                continue
            line = bytes(self.buf[pos:nl + 1])
            pos = nl + 1
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            m = re.match(r"^(\d{3})([ -]?)(.*)$", text)
            if not m or (code is not None and int(m.group(1)) != code):
                raise AssertionError(f"malformed reply line {line!r} (after {raw!r})")
            code = int(m.group(1))
            raw += line
            lines.append(m.group(3))
            if m.group(2) != "-":
                del self.buf[:pos]
                return Reply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        """Send one command line (CRLF added) and read its reply."""
        self.send(line.encode("utf-8") + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def ehlo(self, name="client.test"):
        r = self.cmd(f"EHLO {name}")
        if r.code != 250:
            raise AssertionError(f"EHLO refused: {r}")
        return r

    def pending(self):
        return bytes(self.buf)

    def read_available(self, wait=0.3):
        """Everything the server sends within `wait` seconds (no parsing)."""
        deadline = time.monotonic() + wait
        while not self.eof:
            try:
                self._fill(deadline)
            except socket.timeout:
                break
        return bytes(self.buf)

    def closed(self, timeout=5):
        """True when the server closes within timeout (bytes it sends before
        are kept in the buffer)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except socket.timeout:
                return False
            except OSError:
                return True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------- certificates

def make_cert(dir, cn, names=(), name=None):
    """A self-signed certificate (EC P-256, 2 days) for cn and the DNS
    names; returns (cert path, key path) in dir."""
    name = name or cn
    cert = os.path.join(dir, f"{name}.crt.pem")
    key = os.path.join(dir, f"{name}.key.pem")
    san = ",".join(f"DNS:{n}" for n in (cn, *names))
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", f"/CN={cn}", "-addext", f"subjectAltName={san}"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl req: {p.stderr}")
    return cert, key


def make_passwd(path, users):
    """user:crypt-hash lines (SHA-512 crypt, as `openssl passwd -6` makes)."""
    lines = []
    for user, password in users.items():
        p = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"openssl passwd: {p.stderr}")
        lines.append(f"{user}:{p.stdout.strip()}")
    with open(path, "w") as f:
        f.write("# test users\n" + "\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


# ------------------------------------------------------------------- vsmtpd

DEFAULT_CONF = [
    ("vpsd", [("rules", "rules.vsl"), ("workers", "1")]),
    ("log", [("target", "stderr"), ("level", "debug")]),
    ("vsmtpd", [("listen", "127.0.0.1:{port}"), ("hostname", HOSTNAME)]),
    ("queue", [("dir", "queue")]),
    ("quarantine", [("dir", "quarantine"), ("names", "spam")]),
    ("delivery", [("default", "maildir:{dir}/mail/%d/%l")]),
    ("export", [("archive", "exports")]),
]


class Vsmtpd:
    def __init__(self, rules="", settings=None, conf=None, dir=None):
        if not VSMTPD:
            raise AssertionError("VSMTPD is not set (tests/meson.build integration_env)")
        self.dir = dir or taplib.tmpdir()
        os.chmod(self.dir, 0o755)
        self.conf_path = os.path.join(self.dir, "vps.conf")
        self.rules_path = os.path.join(self.dir, "rules.vsl")
        self.log_path = os.path.join(self.dir, "vsmtpd.log")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.mail_dir = os.path.join(self.dir, "mail")
        os.makedirs(os.path.join(self.dir, "exports"), exist_ok=True)
        self.rules = rules
        self.settings = settings or {}
        self.conf_template = conf
        self.proc = None
        self._pick_ports()

    # -- configuration
    def _pick_ports(self):
        self.port = free_port()
        self.submission_port = free_port()
        self.submissions_port = free_port()

    def _subst(self, text):
        return (str(text).replace("{port}", str(self.port))
                .replace("{submission_port}", str(self.submission_port))
                .replace("{submissions_port}", str(self.submissions_port))
                .replace("{dir}", self.dir))

    def conf_text(self):
        if self.conf_template is not None:
            return self._subst(self.conf_template)
        groups = [(g, dict(kv)) for g, kv in DEFAULT_CONF]
        names = [g for g, _ in groups]
        for group, kv in self.settings.items():
            if group not in names:
                groups.append((group, {}))
                names.append(group)
            target = groups[names.index(group)][1]
            for k, v in kv.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = v
        out = []
        for g, kv in groups:
            out.append(f"[{g}]")
            out.extend(f"{k} = {self._subst(v)}" for k, v in kv.items())
            out.append("")
        return "\n".join(out)

    def write_config(self):
        with open(self.rules_path, "w") as f:
            f.write(self.rules)
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text())

    def _our_ports(self):
        text = self.conf_text()
        return [p for p in (self.port, self.submission_port, self.submissions_port)
                if f":{p}" in text]

    # -- life cycle
    def check(self):
        self.write_config()
        p = subprocess.run([VSMTPD, "-c", self.conf_path, "--check"], capture_output=True,
                           text=True, timeout=60, cwd=self.dir)
        return p.returncode, p.stdout + p.stderr

    def start(self, timeout=10):
        for attempt in range(3):
            self.write_config()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([VSMTPD, "-c", self.conf_path], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.dir)
            log.close()
            taplib._procs.append(self.proc)
            _running.append(self)
            deadline = time.time() + timeout
            ports = self._our_ports()
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                if all(_listening(p) for p in ports):
                    return self
                time.sleep(0.02)
            text = self.log()
            self.stop(timeout=5)
            if "in use" in text and attempt < 2:
                self._pick_ports()  # lost the race for a port: another
                continue
            raise AssertionError(f"vsmtpd did not listen on {ports} (exit "
                                 f"{self.proc.returncode}); log:\n{text[-3000:]}")
        raise AssertionError("vsmtpd: no free ports after 3 attempts")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM, wait up to timeout, then SIGKILL.  Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _running:
            _running.remove(self)
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in _running:
            _running.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- log
    def log(self):
        return taplib.read_text(self.log_path)

    def wait_log(self, pattern, timeout=10, count=1):
        return taplib.wait_log_lines(self.log, pattern, timeout, count, "vsmtpd log")

    # -- sessions
    def smtp(self, port=None, **kw):
        return SmtpClient(port or self.port, **kw)

    def send_mail(self, sender, rcpts, message, ehlo="client.test", mail_params="",
                  rcpt_params="", port=None, client=None):
        """One transaction over a new session (or `client`, after its EHLO).
        message: bytes or str, any line ends (sent with CRLF, dot-stuffed).
        Returns (the reply to the end of data, or the first refusal; the
        queue id or None)."""
        own = client is None
        c = client or self.smtp(port)
        try:
            if own:
                c.ehlo(ehlo)
            r = c.cmd(f"MAIL FROM:<{sender}>" + (f" {mail_params}" if mail_params else ""))
            if r.code != 250:
                return r, None
            ok = 0
            for rcpt in ([rcpts] if isinstance(rcpts, str) else rcpts):
                r = c.cmd(f"RCPT TO:<{rcpt}>" + (f" {rcpt_params}" if rcpt_params else ""))
                ok += r.code == 250
            if not ok:
                return r, None
            r = c.cmd("DATA")
            if r.code != 354:
                return r, None
            data = crlf(message)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            c.send(dot_stuff(data) + b".\r\n")
            r = c.reply()
            return r, (queue_id(r) if r.code == 250 else None)
        finally:
            if own:
                try:
                    c.cmd("QUIT")
                except (AssertionError, OSError):
                    pass
                c.close()

    # -- spool
    def queue_files(self, area="incoming"):
        try:
            return sorted(os.listdir(os.path.join(self.queue_dir, area)))
        except FileNotFoundError:
            return []

    def queue_ids(self, area="incoming"):
        return [n[:-5] for n in self.queue_files(area) if n.endswith(".json")]

    def envelope(self, qid, area="incoming"):
        with open(os.path.join(self.queue_dir, area, qid + ".json"), "rb") as f:
            return json.loads(f.read())

    def queued_message(self, qid, area="incoming"):
        with open(os.path.join(self.queue_dir, area, qid + ".eml"), "rb") as f:
            return f.read()

    def wait_queued(self, qid, timeout=10, area="incoming"):
        deadline = time.time() + timeout
        while True:
            try:
                return self.envelope(qid, area)
            except (FileNotFoundError, ValueError):
                if time.time() >= deadline:
                    raise AssertionError(f"{qid} not in {area}/ after {timeout}s: "
                                         f"{self.queue_files(area)}")
            time.sleep(0.05)

    # -- local delivery (the default template DIR/mail/%d/%l)
    def maildir(self, rcpt):
        local, _, domain = rcpt.rpartition("@")
        return os.path.join(self.mail_dir, domain.lower(), local)

    def maildir_messages(self, rcpt_or_path):
        path = rcpt_or_path if rcpt_or_path.startswith("/") else self.maildir(rcpt_or_path)
        found = []
        for sub in ("new", "cur"):
            try:
                names = os.listdir(os.path.join(path, sub))
            except FileNotFoundError:
                continue
            for n in names:
                p = os.path.join(path, sub, n)
                m = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", n)
                key = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
                try:
                    with open(p, "rb") as f:
                        found.append((key, os.stat(p).st_mtime_ns, n, f.read()))
                except FileNotFoundError:  # moved new/ → cur/ meanwhile
                    continue
        # By delivery time (the name's seconds and M<usec>, not padded, so
        # not by name).  Deliveries run in parallel: tests that send several
        # messages should find theirs by content, not by position.
        return [data for *_, data in sorted(found)]

    def wait_maildir(self, rcpt_or_path, count=1, timeout=10):
        deadline = time.time() + timeout
        while True:
            msgs = self.maildir_messages(rcpt_or_path)
            if len(msgs) >= count:
                return msgs
            if time.time() >= deadline:
                raise AssertionError(f"{len(msgs)} of {count} messages in the maildir of "
                                     f"{rcpt_or_path} after {timeout}s; log:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def all_delivered(self):
        """Every file in a new/ or cur/ directory under DIR/mail."""
        out = []
        for root, dirs, files in os.walk(self.mail_dir):
            if os.path.basename(root) in ("new", "cur"):
                out.extend(os.path.join(root, f) for f in files)
        return sorted(out)

    # -- process
    def _status(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {key} in /proc/{self.pid}/status")

    def rss_kb(self):
        return self._status("VmRSS")

    def hwm_kb(self):
        return self._status("VmHWM")

    def ctl(self, *args, ok=True):
        p = subprocess.run([VPSCTL, "-c", self.conf_path, *args], capture_output=True, timeout=60)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        if ok and p.returncode != 0:
            raise AssertionError(f"vpsctl {args} exited {p.returncode}: {err}")
        return p.returncode, out, err
