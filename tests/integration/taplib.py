# SPDX-License-Identifier: MIT
"""A tiny TAP producer for the integration tests (meson protocol 'tap').

Each test is a function; a failed assertion or an exception fails that test
only.  Temporary directories are removed and every process started through
`spawn` is stopped at the end, whatever happened.
"""
import atexit, os, shutil, signal, socket, subprocess, sys, tempfile, time, traceback

_procs = []
_dirs = []

# Cleanups of the helper modules (postfixlib, sendmaillib, vsmtpdlib): each
# registers its stop_all here; they run at exit and on SIGTERM (meson kills a
# timed-out test with it), all of them, once -- one handler for everyone,
# so importing two helper modules cannot leave one's daemons behind.
_cleanups = []


def on_exit(func):
    """Run func() at exit and on SIGTERM (each registered function once)."""
    if func not in _cleanups:
        _cleanups.append(func)


def _run_cleanups():
    while _cleanups:
        func = _cleanups.pop()
        try:
            func()
        except Exception:
            pass


def _term_handler(signum, frame):
    _run_cleanups()
    raise SystemExit(128 + signum)


atexit.register(_run_cleanups)
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _term_handler)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doc_blocks(path, lang):
    """The fenced code blocks of one language (```lang) in a document, in order."""
    out, cur = [], None
    for line in open(path, encoding="utf-8"):
        if cur is None and line.strip() == "```" + lang:
            cur = []
        elif cur is not None and line.strip() == "```":
            out.append("".join(cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def tmpdir():
    d = tempfile.mkdtemp(prefix="vps-test-")
    _dirs.append(d)
    return d

def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    _procs.append(p)
    return p

_pending = {}

def wait_for_line(p, needle, timeout=10):
    """Read p's output until a line containing needle; returns the lines read.

    Reads the pipe with os.read and keeps unconsumed lines per process: a
    buffered readline would hide lines already read from select()."""
    import selectors
    fd = p.stdout.fileno()
    buf = _pending.setdefault(fd, bytearray())
    lines = []
    deadline = time.time() + timeout
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    try:
        while True:
            while b"\n" in buf:
                i = buf.index(b"\n")
                line = buf[:i].decode("utf-8", "replace")
                del buf[:i + 1]
                lines.append(line)
                if needle in line:
                    return lines
            left = deadline - time.time()
            if left <= 0 or not sel.select(timeout=left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf.extend(chunk)
    finally:
        sel.close()
    raise AssertionError(f"no line with {needle!r} within {timeout}s; got: {lines[-20:]}")

def read_text(path):
    """A log file's text ("" while it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""

def wait_log_lines(read, pattern, timeout=10, count=1, what="log"):
    """Poll read() until it has count lines matching regex pattern; returns them."""
    import re
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        text = read()
        hits = [l for l in text.splitlines() if rx.search(l)]
        if len(hits) >= count:
            return hits
        if time.time() >= deadline:
            raise AssertionError(f"{what}: {count} line(s) matching {pattern!r} not seen "
                                 f"in {timeout}s; tail:\n{text[-3000:]}")
        time.sleep(0.05)

class Skip(Exception):
    """Raised by a test that cannot run here: reported as "ok N # SKIP why",
    which make test counts as skipped, never as passed."""


def run(tests):
    print(f"1..{len(tests)}", flush=True)
    failed = 0
    try:
        for n, t in enumerate(tests, 1):
            try:
                t()
                print(f"ok {n} {t.__name__}", flush=True)
            except Skip as e:
                print(f"ok {n} {t.__name__} # SKIP {e}", flush=True)
            except Exception:
                failed += 1
                print(f"not ok {n} {t.__name__}", flush=True)
                for line in traceback.format_exc().splitlines():
                    print("# " + line, flush=True)
    finally:
        for p in _procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for d in _dirs:
            shutil.rmtree(d, ignore_errors=True)
    sys.exit(1 if failed else 0)
