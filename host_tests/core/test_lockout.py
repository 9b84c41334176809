"""The PIN lockout survives a restart and a power cut at any of its writes (pos.lockout): a
power cycle gives no more tries."""

from norflash import PowerCut
from sealcheck import STORAGE_KEY
from termkit import Kit

WRONG = "5 5 5 5 #"


def test_wrong_pins_stay_counted_across_a_restart():
    kit = Kit(lockout_base_s=30)
    kit.keys(WRONG)
    kit.keys(WRONG)
    assert kit.shows("Wrong PIN 1 left")
    kit.boot()
    rows = kit.keys(WRONG)
    assert rows[2] == "Login locked", rows
    assert rows[3] == "Wait         30s"


def test_a_lock_survives_a_restart_whole_and_keeps_doubling():
    kit = Kit(lockout_base_s=30)
    for _ in range(3):
        kit.keys(WRONG)
    kit.tick(20_000)
    assert kit.rows()[3] == "Wait         10s"
    kit.boot()  # how long it ran is not known after a restart: the whole lock again
    assert kit.rows()[2] == "Login locked"
    assert kit.rows()[3] == "Wait         30s"
    kit.login()  # even the right PIN is ignored
    assert kit.shows("Login locked")
    kit.tick(30_000)
    assert kit.shows("Cashier PIN")
    kit.boot()  # the lock's end was stored: not locked again
    assert kit.shows("Cashier PIN")
    for _ in range(3):
        kit.keys(WRONG)
    kit.boot()
    assert kit.rows()[3] == "Wait         60s"  # the second lock in a row doubles
    kit.tick(60_000)
    kit.login()
    assert kit.rows()[0].startswith("Merchant?")
    kit.keys("* 5 5 5 5 #")  # a good login forgets the locks
    kit.boot()
    kit.keys(WRONG)
    kit.keys(WRONG)
    assert kit.rows()[3] == "Wait         30s"


def test_known_pins_at_a_supervisor_prompt_do_not_count_after_a_restart():
    kit = Kit(lockout_base_s=30)
    kit.login()
    kit.keys("A 2 " + WRONG)  # a refund needs a supervisor
    assert kit.shows("Wrong PIN 2 left")
    kit.keys("1 1 1 1 #")  # a cashier's PIN: no wrong try
    assert kit.shows("Not a supervisor")
    kit.boot()
    assert kit.keys(WRONG)[6] == "Wrong PIN 1 left"
    assert kit.keys(WRONG)[2] == "Login locked"


def test_an_unusable_lockout_file_locks():
    kit = Kit(lockout_base_s=30)
    kit.keys(WRONG)
    kit.store.write("lockout", bytes(48))
    kit.boot()
    assert "login locked" in kit.lockout_fault
    assert kit.rows()[2] == "Login locked"


def attack(cut_at):
    """Wrong PINs until two locks have fallen, the power cut at store write number cut_at
    (-1: never) and the terminal restarted when it is. Returns the PINs checked between the
    locks (the cashiers' by_pin counts them) and the number of writes."""
    kit = Kit(lockout_base_s=30)
    checked = [0]
    runs = []

    def watch():
        cashiers = kit.terminal.cashiers
        by_pin = cashiers.by_pin

        def counting(pin):
            checked[0] += 1
            return by_pin(pin)

        cashiers.by_pin = counting

    watch()
    kit.flash.ops = 0
    kit.flash.cut_at(cut_at)
    locks = 0
    for _ in range(20):
        try:
            kit.keys(WRONG)
            if kit.terminal.locked():
                runs.append(checked[0])
                checked[0] = 0
                locks += 1
                if locks == 2:
                    return runs, kit.flash.ops
                kit.tick(60_000)  # the lock ends (and that is written)
        except PowerCut:
            kit.boot()
            watch()
    raise AssertionError("never locked: %r" % runs)


def test_a_power_cut_at_any_lockout_write_gives_no_more_tries():
    runs, writes = attack(-1)
    assert runs == [3, 3]
    assert writes >= 8  # a count before each PIN, each lock and each lock's end
    for cut_at in range(writes):
        runs, _ = attack(cut_at)
        assert max(runs) <= 3, (cut_at, runs)


def test_a_pin_that_could_not_be_counted_is_not_checked():
    kit = Kit()
    kit.terminal.keep_lockout = lambda terminal: False  # the app's answer when out of heap
    kit.login()
    assert kit.shows("Low memory")
    assert kit.terminal.cashier is None and kit.terminal.wrong_pins == 0


class _Board:
    def __init__(self, store):
        self.store = store
        self.faults = []

    def fault(self, text):
        self.faults.append(text)


def test_the_app_answers_whether_the_count_is_stored():
    from pos.app import App

    kit = Kit()
    kit.keys(WRONG)
    kit.store.write("device.key", STORAGE_KEY)
    board = _Board(kit.store)
    app = App(board)
    kit.terminal.wrong_pins = 2
    assert app.keep_lockout(kit.terminal) is True
    from pos import lockout

    kit.terminal.wrong_pins = 0
    lockout.restore(kit.store, STORAGE_KEY, kit.terminal, kit.now_ms)
    assert kit.terminal.wrong_pins == 2  # what the app stored

    def short(name, data):
        raise MemoryError("memory allocation failed")

    def failing(name, data):
        raise OSError(28)

    kit.store.write = short
    assert app.keep_lockout(kit.terminal) is False  # tried twice, then said
    kit.store.write = failing
    assert app.keep_lockout(kit.terminal) is True  # a failing flash: on it goes, logged
    assert board.faults[-1].startswith("lockout not stored")
