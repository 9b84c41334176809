"""Early start on the ESP32: only the safe-mode check, nothing slow (main.py starts the app).
Holding * at power-on enters safe mode: the app does not start and the REPL is free."""

from board import safemode

if safemode.check():
    print("OneTill: safe mode (* held at power-on); the app will not start.")
