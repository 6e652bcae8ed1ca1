# SPDX-License-Identifier: MIT
"""/proc/PID/status for the benchmarks (mtalib, smtpload): no imports
beyond the standard library, so the load generator stays standalone."""


def proc_status(pid):
    """/proc/PID/status as a dict of strings."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def status_kb(status, key):
    """A "NNN kB" field of proc_status() in kB (0 when absent)."""
    return int(status.get(key, "0 kB").split()[0])
