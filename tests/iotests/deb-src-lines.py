#!/usr/bin/env python3
"""Prints one-line `deb-src` entries for every enabled `deb` source on this machine.

Reads /etc/apt/sources.list, /etc/apt/sources.list.d/*.list (one-line format) and
/etc/apt/sources.list.d/*.sources (deb822 format); files with other names (e.g. *.disabled) are
skipped, as apt skips them. Options that matter for fetching (signed-by, arch) are kept. The output
goes into a private sources list, so the machine's own apt configuration is never changed.
"""
import glob
import os
import sys

root = os.environ.get("APT_ETC", "/etc/apt")


def one_line(path):
    for raw in open(path, encoding="utf-8", errors="replace"):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("deb "):
            yield "deb-src " + line[4:]


def deb822(path):
    stanzas, current, key = [], {}, None
    for raw in open(path, encoding="utf-8", errors="replace"):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:  # continuation line (e.g. an inline key)
            current[key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    for s in stanzas:
        if s.get("enabled", "yes").lower() == "no" or "deb" not in s.get("types", "").split():
            continue
        options = []
        signed = s.get("signed-by", "")
        if signed and "\n" not in signed:  # an inline key cannot go into a one-line entry
            options.append("signed-by=" + signed)
        option_text = " [" + " ".join(options) + "]" if options else ""
        for uri in s.get("uris", "").split():
            for suite in s.get("suites", "").split():
                yield f"deb-src{option_text} {uri} {suite} {s.get('components', '')}".rstrip()


files = [os.path.join(root, "sources.list")] + sorted(glob.glob(os.path.join(root, "sources.list.d", "*")))
lines = []
for f in files:
    if not os.path.isfile(f):
        continue
    if f.endswith(".list"):
        lines += one_line(f)
    elif f.endswith(".sources"):
        lines += deb822(f)
if not lines:
    sys.exit(f"no enabled 'deb' sources found under {root}")
print("\n".join(dict.fromkeys(lines)))
