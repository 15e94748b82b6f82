#!/usr/bin/env python3
"""The top of a worker's profile, from ``perf script`` output on stdin.

Each sample is counted once, under the innermost frame that is a function
of the extension (``ik_*``) or one of a few PostgreSQL functions that say
what the time was for (commits, trigger functions), with the next such
frame as its caller; a sample in none of those is counted under its own
leaf (a library: libcurl, libcrypto, the kernel, malloc).  Used by
test/bench/profile.sh.
"""

import collections
import re
import sys

MARKERS = {
    "CommitTransactionCommand", "XLogFlush", "plpgsql_exec_trigger",
    "BeginInternalSubTransaction", "ReleaseCurrentSubTransaction",
}


def stacks(lines):
    """Each sample's frames, innermost first (function names only)."""
    frames = None
    for line in lines:
        if not line.strip():
            if frames is not None:
                yield frames
            frames = None
            continue
        if not line[0].isspace():
            frames = []                 # a sample's header line
            continue
        parts = line.split()
        name = re.sub(r"\+0x[0-9a-f]+$", "", parts[1]) if len(parts) > 1 else "?"
        if name == "[unknown]":
            name = "[%s]" % parts[-1].strip("()").rsplit("/", 1)[-1]
        if frames is not None:
            frames.append(name)
    if frames is not None:
        yield frames


def main():
    counts = collections.Counter()
    total = 0
    for frames in stacks(sys.stdin):
        total += 1
        ours = [f for f in frames if f.startswith("ik_") or f in MARKERS]
        key = " < ".join(ours[:2]) if ours else "(%s)" % (frames[0] if frames else "?")
        counts[key] += 1
    if total == 0:
        sys.exit("no samples")
    print("%d samples; share of the worker's CPU, by innermost extension function < its caller:" % total)
    for key, n in counts.most_common(25):
        print("%6.1f %%  %s" % (100.0 * n / total, key))


if __name__ == "__main__":
    main()
