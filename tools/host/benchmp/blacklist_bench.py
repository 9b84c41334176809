"""Blacklist lookups on the MicroPython unix port (run by tools/bench blacklist)."""

import gc
import struct
import time

from pos.blacklist import Blacklist


def main(path, entries):
    gc.collect()
    free = gc.mem_free()
    listing = Blacklist(path)
    gc.collect()
    print("blacklist_heap_bytes: %d bytes" % (free - gc.mem_free()))
    assert listing.count == entries
    probes = 1000
    hits = 0
    start = time.ticks_us()
    for number in range(probes):
        if listing.contains(struct.pack(">HI", 0x7A00, number * 7919)):
            hits += 1
    elapsed = time.ticks_diff(time.ticks_us(), start)
    assert hits == probes // 2  # every other one is on the list
    print("blacklist_lookup_us: %d us" % (elapsed // probes))
