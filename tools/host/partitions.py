"""ESP-IDF partition tables: firmware/partitions.csv in, the 0x8000 binary out, and back.

Binary entry (32 bytes, little-endian): magic 0x50AA, type, subtype, offset, size, label
(16 bytes, NUL-padded), flags; then an MD5 entry (0xEBEB, 14 x 0xFF, MD5 of the entries
before it); the rest of the 0xC00-byte table is 0xFF.
"""

import hashlib
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARTITIONS_CSV = os.path.join(ROOT, "firmware", "partitions.csv")
TABLE_OFFSET = 0x8000
TABLE_SIZE = 0xC00
_ENTRY = "<HBBII16sI"
_TYPES = {"app": 0x00, "data": 0x01}
_SUBTYPES = {"factory": 0x00, "phy": 0x01, "nvs": 0x02}


class PartitionError(ValueError):
    """A partition table or CSV that cannot be used; the message says where."""


def read_csv(path=PARTITIONS_CSV):
    """[(name, type, subtype, offset, size)] from a partitions CSV."""
    rows = []
    with open(path) as source:
        for number, line in enumerate(source, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [field.strip() for field in line.split(",")]
            if len(fields) < 5:
                raise PartitionError(
                    "%s:%d: needs name, type, subtype, offset, size" % (path, number)
                )
            name, kind, subtype, offset, size = fields[:5]
            try:
                rows.append(
                    (
                        name,
                        _TYPES[kind],
                        _SUBTYPES[subtype] if subtype in _SUBTYPES else int(subtype, 0),
                        int(offset, 0),
                        int(size, 0),
                    )
                )
            except (KeyError, ValueError):
                raise PartitionError("%s:%d: cannot read %r" % (path, number, line)) from None
    return rows


def table_bytes(rows):
    table = bytearray()
    for name, kind, subtype, offset, size in rows:
        table += struct.pack(_ENTRY, 0x50AA, kind, subtype, offset, size, name.encode(), 0)
    table += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(bytes(table)).digest()
    return bytes(table) + b"\xff" * (TABLE_SIZE - len(table))


def parse_table(data):
    """The rows of a binary table; PartitionError if it is not one or its MD5 is wrong."""
    rows = []
    for start in range(0, len(data) - 31, 32):
        magic = data[start : start + 2]
        if magic == b"\xaa\x50":
            _, kind, subtype, offset, size, label, _ = struct.unpack_from(_ENTRY, data, start)
            rows.append((label.rstrip(b"\x00").decode(), kind, subtype, offset, size))
        elif magic == b"\xeb\xeb":
            if data[start + 16 : start + 32] != hashlib.md5(bytes(data[:start])).digest():
                raise PartitionError("partition table MD5 does not match")
            return rows
        else:
            break
    if not rows:
        raise PartitionError("no partition table at 0x%x" % TABLE_OFFSET)
    return rows


def read_image_table(path):
    """{name: (offset, size)} from the partition table of a flash image or dump."""
    with open(path, "rb") as image:
        image.seek(TABLE_OFFSET)
        data = image.read(TABLE_SIZE)
    return {name: (offset, size) for name, _, _, offset, size in parse_table(data)}
