"""Boot code of an over-the-air update: finishes or undoes a copy into the romfs partition and
counts the trial boots of a new version, before the core is imported.

It runs from outside the romfs partition it rewrites (the ESP32's boot.py loads it from the
vfs; the simulator's boot from its own image), imports nothing of the core, and works on:
    store   /state (pos.store.FileStore): update.state, the phase below, written by rename,
            so a power cut leaves the old phase or the new one; update.txt, what the
            heartbeat says of it ("sw=V;ota=WORD")
    romfs   the romfs partition (esp32.Partition, or the NOR-flash model), 4 KiB blocks
    folder  /state as a path: update.bin (the staged release file, checked by pos.update
            before the phase was set) and update.old (the image that ran before it)

The phases, each written before the step it names:
    IDLE      running `running`; nothing to do
    SAVE      (set by pos.update once update.bin is checked, at an idle moment) copy the
              romfs partition as it is to update.old (a temporary file, then a rename), then
              COPY: a cut means the copy is made again, the partition untouched
    COPY      copy the staged image into romfs, then TRIAL: a cut anywhere in the copy
              means the copy starts again at the next boot (the staged file is unchanged),
              so the core is never imported from a mixture
    TRIAL     `target` runs on trial: each boot counts; the app confirms it (pos.update)
              after its first authenticated exchange with the back end; after TRIAL_BOOTS
              boots without that, REVERT
    REVERT    copy update.old back into romfs (again restartable), then ROLLED_BACK
    ROLLED_BACK  `running` is the previous version again; `target` failed its trial and
              is never fetched again
`previous` is the version update.old holds. `floor` is the highest version ever confirmed:
no release at or below it is taken (anti-rollback).
"""

import os
import struct

STATE = "update.state"
TEXT = "update.txt"
STAGED = "update.bin"
BACKUP = "update.old"
IDLE = 0
SAVE = 1
COPY = 2
TRIAL = 3
REVERT = 4
ROLLED_BACK = 5
TRIAL_BOOTS = 3  # boots a new version gets to reach the back end
BLOCK = 4096
_PIECE = 512  # bytes copied at a time: the heap at a restart is in pieces (interned names)
_FORMAT = ">4sBBHIIII"  # magic, phase, boots, 0, running, target, previous, floor
_SIZE = 24
_MAGIC = b"OTUP"
_WORDS = ("ok", "installing", "installing", "trial", "reverting", "rolledback")


def read_state(store):
    """[phase, boots, running, target, previous, floor] (previous: the version in
    update.old); a terminal never updated is IDLE at version 0."""
    data = store.read(STATE)
    if data is None or len(data) != _SIZE or data[:4] != _MAGIC:
        return [IDLE, 0, 0, 0, 0, 0]
    fields = struct.unpack(_FORMAT, data)
    return [fields[1], fields[2], fields[4], fields[5], fields[6], fields[7]]


def write_state(store, state):
    phase, boots, running, target, previous, floor = state
    data = struct.pack(_FORMAT, _MAGIC, phase, boots, 0, running, target, previous, floor)
    store.write(STATE, data)
    text = "sw=%d;ota=%s" % (running, _WORDS[phase])
    if phase != IDLE:
        text += ":%d" % target
    if store.read(TEXT) != text.encode():  # a flash write only when it changes
        store.write(TEXT, text.encode())


def staged_image(folder):
    """(offset, length) of the image inside the staged release file (its header says)."""
    with open(folder + "/" + STAGED, "rb") as staged:
        header = staged.read(20)
    signature_length, _, _, length = struct.unpack_from(">HIII", header, 6)
    return 52 + signature_length, length


def copy_into(romfs, path, offset, length):
    """Erase and program romfs block by block from a file, a piece at a time."""
    piece = bytearray(_PIECE)
    with open(path, "rb") as source:
        source.seek(offset)
        for number in range((length + BLOCK - 1) // BLOCK):
            romfs.ioctl(6, number)
            for at in range(0, BLOCK, _PIECE):
                count = source.readinto(piece) if number * BLOCK + at < length else 0
                for i in range(count or 0, _PIECE):
                    piece[i] = 0xFF  # past the image: as erased flash reads
                romfs.writeblocks(number, piece, at)


def boot(store, romfs, folder):
    """Run at every start before the core is imported. Returns the state after it."""
    state = read_state(store)
    if state[0] == SAVE:
        path = folder + "/" + BACKUP
        piece = bytearray(_PIECE)
        with open(path + ".new", "wb") as out:
            for number in range(romfs.ioctl(4, 0)):
                for at in range(0, BLOCK, _PIECE):
                    romfs.readblocks(number, piece, at)
                    out.write(piece)
        os.rename(path + ".new", path)  # over the old one, at once (LittleFS, POSIX)
        state[0] = COPY
        write_state(store, state)
    if state[0] == COPY:
        offset, length = staged_image(folder)
        copy_into(romfs, folder + "/" + STAGED, offset, length)
        state = [TRIAL, 0, state[3], state[3], state[2], state[5]]
        write_state(store, state)
    if state[0] == TRIAL:
        state[1] += 1
        if state[1] > TRIAL_BOOTS:
            state[0] = REVERT
        write_state(store, state)
    if state[0] == REVERT:
        copy_into(romfs, folder + "/" + BACKUP, 0, romfs.ioctl(4, 0) * BLOCK)
        state = [ROLLED_BACK, 0, state[4], state[3], state[4], state[5]]
        write_state(store, state)
    return state
