"""Key rotation on the terminal (pos.keyrot), step by step without the whole app: a rotation
for another terminal, of an older generation or under another key is refused; a power cut at
every flash write of the install leaves a terminal that finishes it at its next start (as
App.start does: a staged rotation is an install to finish); the record queued before it
opens with the old keys, the one after with the new. The payloads are test_keyrot's (made
with the back end's wrapper)."""

from binascii import unhexlify

from flashregion import Region

from expect import raises, scratch
from norflash import CutStore, NorFlash, PowerCut

LINK_KEY = b"downlink-key-016"
NEW_IK_ID = unhexlify("5eed0001c0ffee01")
NEW_IK = b"new-initial-k-01"
NEW_LINK_KEY = b"new-downlink-k01"
PAYLOAD = unhexlify(
    "4f544b5254303034320000000000000000000000000000015eed0001c0ffee01eedfba9edf22e76381f004"
    "27748f0a0bf4b7f9ab138fb345220c9d261d054cf16e25274e06fdc9b1"
)


_chip = []


def _quiet(text):
    pass


class _Board:
    """The queue, the state log and the state store on one chip, provisioned as appkit's
    board is (not appkit itself: it loads pos.app)."""

    def __init__(self):
        from pos.journal import Journal
        from sealcheck import IK, IK_ID, STORAGE_KEY

        if not _chip:
            _chip.append(NorFlash(6 + 48, sector_size=256, path=scratch("keyrot-chip")))
        else:
            _chip[0].erase_all()
        self.flash = _chip[0]
        self.bdev = Region(self.flash, 0, 6)
        self.statelog = Region(self.flash, 6, 12, 4)
        self.store = CutStore(self.flash)
        Journal.provision(self.statelog, STORAGE_KEY, IK, IK_ID)
        self.uplink = None
        self.fault = _quiet


class _Restarted:
    """What pos.keyrot.install uses of the app, as App.start leaves it, without the config
    and the terminal (two whole apps in turn do not fit one 96 KiB heap)."""

    def __init__(self, board):
        import gc

        from pos.ledger import Ledger
        from pos.txq import TxQueue
        from sealcheck import STORAGE_KEY

        gc.collect()
        self.board = board
        self.ledger = Ledger(TxQueue(board.bdev), board.statelog, STORAGE_KEY)
        self.terminal = self.settings = self  # not pos.terminal: 12 KiB of code
        self.terminal_id = "T0042"
        generation = board.store.read("keygen")
        self.key_generation = int.from_bytes(generation, "big") if generation else 0


def test_a_rotation_for_another_terminal_or_an_older_generation_is_refused():
    from pos import keyrot

    app = _Restarted(_Board())
    other = PAYLOAD[:4] + b"T0099" + PAYLOAD[9:]
    message = str(raises(keyrot.RotationError, keyrot.stage, app, 1, other, LINK_KEY))
    assert "another terminal" in message
    app.key_generation = 1
    message = str(raises(keyrot.RotationError, keyrot.stage, app, 1, PAYLOAD, LINK_KEY))
    assert "in force" in message
    app.key_generation = 0
    message = str(raises(keyrot.RotationError, keyrot.stage, app, 1, PAYLOAD, bytes(16)))
    assert "does not unwrap" in message
    message = str(raises(keyrot.RotationError, keyrot.stage, app, 2, PAYLOAD, LINK_KEY))
    assert "says it is generation 1" in message
    assert app.board.store.read(keyrot.STAGED) is None  # nothing staged by any of them


def _book(app):
    from pos.record import CASH, SALE, Record

    app.ledger.book(Record(SALE, 1, 500, 978, method=CASH))


def _amounts(app):
    """The amount of each queued record, the first opened with the old keys, the rest with
    the new ones."""
    from pos.record import Record
    from sealcheck import _sealer, keys_for

    amounts = []
    for counter, frame in app.ledger.queue.unsent():
        keys = keys_for(counter, NEW_IK, NEW_IK_ID) if amounts else keys_for(counter)
        plain = _sealer.open(bytes(frame[1:-4]), keys[0], keys[1])
        amounts.append(Record.unpack(bytes(plain)).amount_minor)
    return amounts


def _cut_at(cut):
    """Stage a rotation after one sale, cut the power at the install's flash operation
    number `cut`, restart, finish, sell once more; True if the install ran whole first."""
    from pos import keyrot

    board = _Board()
    board.store.write("downlink.key", LINK_KEY)
    app = _Restarted(board)
    _book(app)
    keyrot.stage(app, 1, PAYLOAD, LINK_KEY)
    board.flash.ops = 0
    board.flash.cut_at(cut, seed=cut + 1)
    try:
        keyrot.install(app)
        finished = True
    except PowerCut:
        finished = False
    board.flash.reboot()
    app = None
    app = _Restarted(board)  # as App.start does: a staged file is an install to finish
    if board.store.size("keys.new") is not None:
        keyrot.install(app)
    assert app.key_generation == 1, cut
    assert app.ledger.journal.ik_id == NEW_IK_ID, cut
    assert board.store.read("downlink.key") == NEW_LINK_KEY, cut
    assert board.store.read("keys.new") is None, cut
    _book(app)
    assert _amounts(app) == [500, 500], cut  # the sale before the install, and one after
    app = board = None
    return finished


def test_a_power_cut_at_every_flash_operation_of_the_install_is_finished_at_start():
    cut = 0
    while not _cut_at(cut):
        cut += 1
    assert cut > 60  # the sector, every register's frame, the header, the shreds, the keys
