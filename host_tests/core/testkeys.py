"""Test keys of a provisioned terminal: its DUKPT initial key and IK ID, and its storage key.
A module of their own, so that a test kit which needs only the keys (appkit) does not load
the sealed-record checks (sealcheck) onto the 96 KiB heap the app is tested in."""

IK = b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x0f\xed\xcb\xa9\x87\x65\x43\x21"
IK_ID = b"\x01\x02\x03\x04\x05\x06\x07\x08"
STORAGE_KEY = b"storage-key-0001"
