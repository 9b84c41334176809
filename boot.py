"""Early start on the ESP32: nothing slow happens here; main.py starts the terminal."""
