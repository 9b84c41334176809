"""OneTill core: runs unchanged on CPython 3.11, the MicroPython unix port and the ESP32."""
