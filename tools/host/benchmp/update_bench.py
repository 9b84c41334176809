"""Release signature checks on the MicroPython unix port (run by tools/bench update).

Each release file was made by tools/release (LMS_SHA256_M32_H10 over LMOTS_SHA256_N32_W4),
each with a leaf of its own, so the mean covers the spread of chain lengths a digest gives.
The peak heap is the least free heap in which a full verification still succeeds: found by
pinning the free heap with ballast and halving the interval, so it counts everything live at
the worst moment (buffers, hash objects, digests not yet collected), not the total churn.
"""

import gc
import time

from pos import lms, release


def _read(path):
    with open(path, "rb") as source:
        header = release.Header(source.read(release.HEADER_SIZE))
        return header, source.read(header.signature_length)


def _mean_verify_ms(public_key, signed):
    total = 0
    for message, signature in signed:
        start = time.ticks_us()
        assert lms.verify(public_key, signature, message)
        total += time.ticks_diff(time.ticks_us(), start)
    return total / len(signed) / 1000


def _ballast(free):
    # Pieces, largest first: the loaded code leaves the free heap in fragments.
    gc.collect()
    pieces = []
    size = 1 << 15
    while size >= 32:
        if gc.mem_free() - free < size:
            size //= 2
            continue
        try:
            pieces.append(bytearray(size - 24))
        except MemoryError:
            size //= 2
    gc.collect()
    return pieces


def _fits(free, public_key, header, signature):
    ballast = _ballast(free)
    actual = gc.mem_free()
    try:
        lms.verify(public_key, signature, header.data)
        return actual
    except MemoryError:
        return 0
    finally:
        del ballast


def _peak_heap(public_key, header, signature):
    low, high = 0, 16384  # low fails, high succeeds
    least = _fits(high, public_key, header, signature)
    assert least, "a verification needs more than 16 KiB of heap"
    while high - low > 16:
        middle = (low + high) // 2
        actual = _fits(middle, public_key, header, signature)
        if actual:
            high, least = middle, min(least, actual)
        else:
            low = middle
    return least


def main(public_key_path, paths, w8_fixture_path):
    with open(public_key_path, "rb") as source:
        public_key = source.read()
    releases = [_read(path) for path in paths]
    signed = [(header.data, signature) for header, signature in releases]
    header, signature = releases[0]
    print("lms_signature_bytes: %d bytes" % len(signature))
    print("lms_verify_ms: %.1f ms" % _mean_verify_ms(public_key, signed))
    print("lms_verify_peak_heap_bytes: %d bytes" % _peak_heap(public_key, header, signature))
    # The whole check of the first release: signature, then the image streamed from its file.
    with open(paths[0], "rb") as source:
        source.seek(release.HEADER_SIZE + header.signature_length)
        start = time.ticks_us()
        release.check(public_key, header, signature, source)
        elapsed = time.ticks_diff(time.ticks_us(), start)
    print("release_check_ms: %.1f ms" % (elapsed / 1000))
    print("release_image_bytes: %d bytes" % header.image_length)
    # For comparison: W8 signatures (made by hsslms with one H5 level; the height adds only
    # five hashes to a check), which are smaller but take many more hashes.
    with open(w8_fixture_path, "rb") as source:
        w8_key = source.read(lms.HSS_PUBLIC_KEY_SIZE)
        w8_signed = []
        while True:
            length = int.from_bytes(source.read(2), "big")
            if not length:
                break
            message = source.read(length)
            w8_signed.append((message, source.read(1296)))
    print("lms_verify_w8_ms: %.1f ms" % _mean_verify_ms(w8_key, w8_signed))
    print("lms_signature_w8_bytes: %d bytes" % len(w8_signed[0][1]))
