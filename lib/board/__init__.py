"""Hardware adapters for the ESP32 terminal; the core never imports this package."""
