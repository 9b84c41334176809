"""tools/provision: config checked, identity made, vfs image the device's MicroPython mounts;
provision, sell in the simulator on that image, recover the sale with the BDK."""

import json
import os
import shutil
import subprocess
import sys

from tools.host.sim import demo_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BDK_HEX = "00112233445566778899aabbccddeeff"


def run(module, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def provision(config, key, terminal_id, *extra):
    return run(
        "tools.host.provision",
        "--config",
        config,
        "--bdk-file",
        key,
        "--terminal-id",
        terminal_id,
        *extra,
    )


def config_dir(tmp_path, terminal_id="TP0001", broken=False):
    folder = tmp_path / "config"
    folder.mkdir()
    for name, text in demo_config(terminal_id, b"\x05" * 16, b"salt-for-tests").items():
        if broken and name == "merchants.json":
            text = text.replace('"name": "Tea House"', '"name": ""')
        (folder / name).write_text(text)
    key = tmp_path / "bdk.key"
    key.write_text(BDK_HEX)
    return str(folder), str(key)


def test_provision_sell_recover_round_trip(tmp_path):
    config, key = config_dir(tmp_path)
    out = tmp_path / "out"
    db = str(tmp_path / "backend.db")
    done = provision(config, key, "TP0001", "--out", str(out), "--flash-image", "--register", db)
    assert done.returncode == 0, done.stderr
    assert "provisioned terminal TP0001" in done.stdout and "registered" in done.stdout
    identity = json.loads((out / "identity.json").read_text())
    assert identity["terminal_id"] == "TP0001" and len(identity["ik_id"]) == 16
    assert BDK_HEX not in (out / "vfs.img").read_bytes().hex()  # the BDK never goes on it
    state = os.path.join(ROOT, "build", "scratch", "sim-provisioned")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    shutil.copy(out / "flash.bin", os.path.join(state, "flash.bin"))
    sold = run(
        "tools.host.sim", "--state", state, "--offline", "--keys", "1 1 1 1 # 2 # 1 2 3 4 # 4 #"
    )
    assert sold.returncode == 0, sold.stdout + sold.stderr
    assert "|APPROVED        |" in sold.stdout
    dump = ("--flash", os.path.join(state, "flash.bin"), "--bdk-file", key)
    dump += ("--ik-id", identity["ik_id"])
    recovered = run("tools.host.recover", *dump, "--json")
    assert recovered.returncode == 0, recovered.stderr
    (sale,) = json.loads(recovered.stdout)
    assert (sale["merchant_number"], sale["amount_minor"], sale["method"]) == (2, 1234, "cash")
    shown = run("tools.host.backend", "report", "--db", db, "--json")
    assert json.loads(shown.stdout)["merchants"] == []  # registered, nothing uploaded yet
    # The dead terminal's unsent sale goes to the back end from the dump.
    from tools.host.backend import Server, make_certs

    certs = str(tmp_path / "certs")
    make_certs(certs)
    server = Server(db, key, certs)
    try:
        sent = run(
            "tools.host.recover",
            *dump,
            "--upload",
            server.url,
            "--tid",
            "TP0001",
            "--ca",
            certs + "/ca.pem",
        )
    finally:
        server.stop()
    assert sent.returncode == 0, sent.stderr
    assert "acked up to counter %d" % sale["counter"] in sent.stderr
    report = json.loads(run("tools.host.backend", "report", "--db", db, "--json").stdout)
    assert [(m["number"], m["sales_total_minor"]) for m in report["merchants"]] == [(2, 1234)]


def test_malformed_config_is_refused_and_nothing_written(tmp_path):
    config, key = config_dir(tmp_path, broken=True)
    out = tmp_path / "out"
    done = provision(config, key, "TP0001", "--out", str(out))
    assert done.returncode == 2 and "config refused" in done.stderr and "name" in done.stderr
    assert not out.exists()


def test_dry_run_and_wrong_terminal_id(tmp_path):
    config, key = config_dir(tmp_path)
    dry = provision(config, key, "TP0001", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would provision")
    wrong = provision(config, key, "TP9999", "--dry-run")
    assert wrong.returncode == 2 and "names TP0001" in wrong.stderr
