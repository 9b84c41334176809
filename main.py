"""Starts the terminal on the ESP32 (the application is not built yet; see README.md)."""

import sys

print("OneTill: the terminal application is not built yet; see README.md.")
sys.exit(0)
