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
