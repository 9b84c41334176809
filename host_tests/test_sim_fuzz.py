"""A keypad fuzz test: seeded random hands on the real simulator (tools/sim --keys, the real
firmware on MicroPython at its default heap), offline and with the back end.

Every token the simulator takes, in random order and bursts: logins (right and wrong PINs),
menus, amounts, backspaces, card reads and scans on and off the card screen, link flips,
short waits. No run may freeze (the simulator answers every token), crash, or leave a record
that tools/recover cannot open with the BDK. A failure names its seed: rerun it with
ONETILL_FUZZ_SEED=N .venv/bin/python -m pytest host_tests/test_sim_fuzz.py. The seeds are
fixed unless ONETILL_FUZZ_RANDOM=1 asks for new ones.
"""

import json
import os
import random
import subprocess
import sys
import time

from test_sim import ROOT, sim, state_folder

CARD = "4111111111111111"
KEYED = " ".join("5413672891045230")  # Luhn-valid, keyed digit by digit
SINGLE = list("0123456789#*ABCD") + ["B"] * 4 + ["#"] * 4
ODD = [
    "card:" + CARD,  # off the card screen, most of the time
    "card:4111111111111112",  # fails the Luhn check
    "scan:28761234567890",
    "link:down",
    "link:up",
    "wait:30",
    "A 1",  # void last
    "A 2",  # refund
    "A 3",  # X report
    "A 5 #",  # status
    "1 2 3 4 #",  # a wrong PIN, wherever it lands
]
METHODS = ["1 card:" + CARD, "2 " + KEYED + " #", "3 scan:28761234567890", "4"]


def hands(rng, episodes):
    """Tokens of a random session: sales (any merchant, amount and method) as a cashier
    types them, with stray keys, held keys, backspaces, odd events and logouts mixed in at
    random, so that later steps land on screens they were not meant for."""
    tokens = "1 1 1 1 #".split()

    def noise():
        if rng.random() < 0.35:
            roll = rng.random()
            if roll < 0.45:
                tokens.extend(rng.choice(SINGLE) for _ in range(rng.randint(1, 3)))
            elif roll < 0.6:
                tokens.extend([rng.choice(SINGLE)] * rng.randint(3, 12))  # a key held down
            else:
                tokens.extend(rng.choice(ODD).split())

    for _ in range(episodes):
        if rng.random() < 0.15:  # out and in again, sometimes as another cashier
            tokens.extend(("* * * * " + rng.choice(["1 1 1 1", "2 2 2 2", "9 9 9 9"])).split())
            tokens.append("#")
        tokens.extend([str(rng.randint(1, 3)), "#"])
        noise()
        for _ in range(rng.randint(1, 5)):
            tokens.append(str(rng.randint(0, 9)))
            if rng.random() < 0.15:
                tokens.append("B")
        noise()
        tokens.append("#")
        noise()
        tokens.extend(rng.choice(METHODS).split())
        noise()
        tokens.extend(["#", "#"])
    return " ".join(tokens)


def recover(state):
    return subprocess.run(
        [sys.executable, "-m", "tools.host.recover", "--state", state, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_run(seed, state, keys, *flags):
    started = time.monotonic()
    result = sim(state, keys, *flags, timeout=150)
    where = "seed %d (ONETILL_FUZZ_SEED=%d), keys %r" % (seed, seed, keys)
    assert result.returncode == 0, "%s:\n%s%s" % (
        where,
        result.stdout[-3000:],
        result.stderr,
    )
    assert "Traceback" not in result.stdout + result.stderr, where
    assert result.stdout.count("\n> ") == len(keys.split()), where  # every token answered
    approved = result.stdout.count("|APPROVED        |")
    opened = recover(state)
    assert opened.returncode == 0, "%s: tools/recover: %s%s" % (
        where,
        opened.stdout[-2000:],
        opened.stderr,
    )
    rows = json.loads(opened.stdout)
    assert not [row for row in rows if row["error"]], where
    return approved, time.monotonic() - started


def seeds(count):
    fixed = os.environ.get("ONETILL_FUZZ_SEED")
    if fixed:
        return [int(fixed)] * count
    # Fixed seeds by default, so that a run of tools/test is the same run every time;
    # ONETILL_FUZZ_RANDOM=1 draws new ones, to look further.
    if os.environ.get("ONETILL_FUZZ_RANDOM"):
        base = random.SystemRandom().randrange(1 << 30)
    else:
        base = 20261129
    return [base + n for n in range(count)]


def test_random_hands_offline():
    approved = 0
    for seed in seeds(4):
        state = state_folder("fuzz-offline")
        approved += check_run(seed, state, hands(random.Random(seed), 25), "--offline")[0]
    assert approved >= 3, "the hands sold almost nothing: the test proved little"


def test_random_hands_with_the_back_end():
    (seed,) = seeds(1)
    state = state_folder("fuzz-backend")
    keys = hands(random.Random(seed), 15) + " link:up"
    check_run(seed, state, keys, "--drain")
