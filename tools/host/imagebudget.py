"""The size budget of the custom frozen OneTill image (firmware/manifest.py), estimated here
without ESP-IDF: stock app + frozen code against the factory app partition.

What is measured: the factory partition (firmware/partitions.csv), the xtensawin .mpy files
of every package the manifest freezes (compiled here by mpy-cross), and the stock app when
a stock ESP32_GENERIC .bin is given. What is assumed (firmware/README.md says why): the
stock app size when no .bin is given, the size of micropython-lib's ssd1306 (not available
offline), and the factor from .mpy size to frozen size. The real figure is the one ESP-IDF
prints after the build ("micropython.bin binary size ... bytes free").
"""

import os

from tools.host import mpybuild, partitions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(ROOT, "firmware", "manifest.py")
APP_PARTITION = "factory"
# The stock .bin is written at 0x1000 and holds the bootloader and a partition table before
# the app, which starts at 0x10000: the app is the file less this much.
STOCK_BIN_APP_OFFSET = 0x10000 - 0x1000
# Assumed, not measured here: an ESP32_GENERIC app as ESP-IDF 5.0 reported it for a
# MicroPython 1.2x build with one extra C module ("micropython.bin binary size 0x1a1110
# bytes", dmazzella/ucrypto issue 17), so on the large side of a stock image.
ASSUMED_STOCK_APP_BYTES = 0x1A1110
ASSUMED_REQUIRED_BYTES = {"ssd1306": 3 * 1024}  # one small driver module, as .mpy
# Frozen code keeps the bytecode of the .mpy but adds a raw-code struct per function,
# constant objects and firmware qstr entries: 1.5x the .mpy size is the assumed bound.
ASSUMED_FROZEN_FACTOR = 1.5


def evaluate_manifest(mpy_dir, manifest=MANIFEST):
    """The manifest's calls, with stand-ins for MicroPython's include/require/package/module:
    [("include", path)], [("require", name)], [("package"|"module", name, base_path)], with
    paths expanded as if this repository were checked out beside MicroPython as onetill/."""
    calls = []
    variables = {"$(MPY_DIR)": mpy_dir, "$(PORT_DIR)": os.path.join(mpy_dir, "ports/esp32")}

    def expand(path):
        for name, value in variables.items():
            path = path.replace(name, value)
        return os.path.normpath(path.replace(os.path.join(mpy_dir, "..", "onetill"), ROOT))

    namespace = {
        "include": lambda path: calls.append(("include", expand(path))),
        "require": lambda name, **_: calls.append(("require", name)),
        "package": lambda name, base_path=".", **_: calls.append(
            ("package", name, expand(base_path))
        ),
        "module": lambda name, base_path=".", **_: calls.append(
            ("module", name, expand(base_path))
        ),
    }
    with open(manifest) as source:
        exec(compile(source.read(), "manifest.py", "exec"), namespace)
    return calls


def frozen_packages():
    """[(name, base folder)] of the packages the manifest freezes from this repository."""
    mpy_dir = os.path.join(os.path.dirname(ROOT), "micropython")
    calls = evaluate_manifest(mpy_dir)
    return [(call[1], call[2]) for call in calls if call[0] == "package"]


def frozen_mpy():
    """[(.mpy path, size)] of every frozen file, compiled for the ESP32 (xtensawin) with the
    source names the firmware build gives them (pos/terminal.py)."""
    built = []
    for base in sorted({base for _, base in frozen_packages()}):
        out_dir = os.path.join(ROOT, "build", "frozen", os.path.relpath(base, ROOT))
        names = [name for name, package_base in frozen_packages() if package_base == base]
        for path, size in mpybuild.compile_tree(os.path.relpath(base, ROOT), out_dir, "xtensawin"):
            package = os.path.relpath(os.path.join(ROOT, path), out_dir).split(os.sep)[0]
            if package in names:
                built.append((path, size))
    return built


def app_partition_size(csv_path=partitions.PARTITIONS_CSV):
    for name, _, _, _, size in partitions.read_csv(csv_path):
        if name == APP_PARTITION:
            return size
    raise partitions.PartitionError("%s has no %s partition" % (csv_path, APP_PARTITION))


def budget(stock_bin=None):
    """{figure: bytes} and the lines that explain them; "free" < 0 means it does not fit."""
    calls = evaluate_manifest(os.path.join(os.path.dirname(ROOT), "micropython"))
    required = [call[1] for call in calls if call[0] == "require"]
    built = frozen_mpy()
    ours = sum(size for _, size in built)
    theirs = sum(ASSUMED_REQUIRED_BYTES.get(name, 4 * 1024) for name in required)
    if stock_bin:
        stock = os.path.getsize(stock_bin) - STOCK_BIN_APP_OFFSET
        if stock <= 0:
            raise OSError("%s is too small for a MicroPython ESP32 image" % stock_bin)
        stock_source = "measured: %s less 0x%x" % (
            os.path.basename(stock_bin),
            STOCK_BIN_APP_OFFSET,
        )
    else:
        stock = ASSUMED_STOCK_APP_BYTES
        stock_source = "assumed, see firmware/README.md; --firmware STOCK.bin measures it"
    frozen = int((ours + theirs) * ASSUMED_FROZEN_FACTOR)
    partition = app_partition_size()
    total = stock + frozen
    figures = {
        "partition": partition,
        "stock": stock,
        "ours_mpy": ours,
        "required_mpy": theirs,
        "frozen": frozen,
        "total": total,
        "free": partition - total,
    }
    lines = [
        "factory app partition     %8d bytes (firmware/partitions.csv)" % partition,
        "stock MicroPython app     %8d bytes (%s)" % (stock, stock_source),
        "frozen %-18s %8d bytes (measured: %d xtensawin .mpy files)"
        % ("+".join(name for name, _ in frozen_packages()), ours, len(built)),
        "frozen %-18s %8d bytes (assumed)" % ("+".join(required) or "-", theirs),
        "frozen code estimate      %8d bytes (.mpy x %.1f, assumed)"
        % (frozen, ASSUMED_FROZEN_FACTOR),
        "estimated image           %8d bytes, %d bytes (%d%%) free"
        % (total, partition - total, 100 * (partition - total) // partition),
    ]
    return figures, lines
