"""Key rotation on the terminal (pos.keyrot): a rotation document checked and staged, then
installed in one power-safe step. A power cut at every flash write of the install leaves a
terminal that finishes it at start; records queued before it open with the old keys, those
after with the new ones; a rotation for another terminal or an older generation is refused.

The payloads are data made once with the back end's wrapper (cryptography's aes_key_wrap
under pos.keyrot.derive_kek(LINK_KEY, 1)): the terminal only unwraps. pos.keyrot and the
record openers are imported once the terminal has started, as the app loads pos.keyrot."""

from binascii import unhexlify

from appkit import Board, config_folder
from pos.app import App

LINK_KEY = b"downlink-key-016"
NEW_IK_ID = unhexlify("5eed0001c0ffee01")
NEW_IK = b"new-initial-k-01"
NEW_LINK_KEY = b"new-downlink-k01"
_WRAPPED = (
    "5eed0001c0ffee01eedfba9edf22e76381f00427748f0a0bf4b7f9ab138fb345220c9d261d054cf16e"
    "25274e06fdc9b1"
)
_HEAD = "4f544b52"  # "OTKR"
PAYLOAD = unhexlify(_HEAD + "54303034320000000000000000000000" + "00000001" + _WRAPPED)
SALE_KEYS = "1 2 3 4 # 1 # 5 0 0 # 4 # #"


def _board():
    """A fresh board with the current downlink key."""
    board = Board(config_folder())
    board.store.write("downlink.key", LINK_KEY)
    return board


def _started(board):
    app = App(board)
    app.start()
    return app


def _sell(app):
    for key in SALE_KEYS.split():
        app.feed(("key", key))


def _frames(app):
    """(counter, frame) of every unsent record (copied: the queue reads into one buffer)."""
    return [(counter, bytes(frame)) for counter, frame in app.ledger.queue.unsent()]


def _opens(counter, frame, new_keys=False):
    """The amount of a queued record, opened with the old keys or the new ones."""
    from pos.record import Record
    from sealcheck import _sealer, keys_for

    data_key, mac_key = keys_for(counter, NEW_IK, NEW_IK_ID) if new_keys else keys_for(counter)
    return Record.unpack(bytes(_sealer.open(bytes(frame[1:-4]), data_key, mac_key))).amount_minor


def test_records_before_the_install_keep_their_keys_and_after_it_use_the_new_ones():
    board = _board()
    app = _started(board)
    _sell(app)
    from pos import keyrot

    keyrot.stage(app, 1, PAYLOAD, LINK_KEY)
    keyrot.install(app)
    assert app.key_generation == 1 and app.ledger.journal.ik_id == NEW_IK_ID
    assert board.store.read("downlink.key") == NEW_LINK_KEY
    assert board.store.read(keyrot.STAGED) is None
    assert board.store.read(keyrot.GENERATION_FILE) == b"\x00\x00\x00\x01"
    _sell(app)
    (old_counter, old_frame), (new_counter, new_frame) = _frames(app)
    assert new_counter > old_counter
    assert _opens(old_counter, old_frame) == 500  # the old key
    assert _opens(new_counter, new_frame, True) == 500
    assert ";kg=1" in app.heartbeat()


def test_a_staged_rotation_is_installed_at_start_before_the_first_sale():
    board = _board()
    board.store.write("keys.new", PAYLOAD)  # staged, then the power went
    app = _started(board)
    assert app.key_generation == 1 and app.ledger.journal.ik_id == NEW_IK_ID
    assert board.store.read("downlink.key") == NEW_LINK_KEY
    assert board.store.read("keys.new") is None
    _sell(app)
    ((counter, frame),) = _frames(app)
    assert _opens(counter, frame, True) == 500
