"""Expected-exception helper that works the same under pytest and the MicroPython runner."""


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail the test if it raised none or another."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("expected " + exc_type.__name__ + " from " + _name(fn))


def _name(fn):
    return getattr(fn, "__name__", "call")


def scratch(prefix):
    """A fresh folder name under build/scratch (relative, so a test allocates the same
    strings wherever the repository lives: on a 96 KiB heap even that matters)."""
    import os
    from binascii import hexlify

    for folder in ("build", "build/scratch"):
        try:
            os.mkdir(folder)
        except OSError:
            pass  # it exists
    return "build/scratch/" + prefix + "-" + hexlify(os.urandom(6)).decode()


def loopback_port():
    """A port for a test's loopback server, different in every process: tools/test runs
    tests in parallel processes, which must not all listen on one port. Below Linux's
    ephemeral ports (32768 up): those are taken by every connection and every server bound
    to port 0 on the machine, and one of them on the port failed a whole test module."""
    import os

    return 10000 + int.from_bytes(os.urandom(2), "big") % 22000
