"""pos.downlink against a loopback HTTP server: a config, blacklist delta or command list is
used only when whole, with a matching MAC, newer than what is in force and valid; anything
else changes nothing and says why."""

import os
import struct

from downkit import KEY, OTHER_KEY, PORT, config_document, http, merchants, serve

import pos.terminal  # noqa: F401  (loaded on a terminal before any config arrives)
from expect import scratch
from pos.blacklist import Blacklist
from pos.contact import authenticate
from pos.downlink import (
    PUSHED_CONFIG,
    Downlink,
    DownlinkError,
    derive_downlink_key,
    seal_document,
)
from pos.uplink import Uplink

_uplink = []


def downlink(folder):
    # One uplink for the process, as on a terminal (its 2 KiB batch buffer made once).
    if not _uplink:
        _uplink.append(Uplink(None, "127.0.0.1", PORT, "T0042", None))
        authenticate(_uplink[0], KEY)
    return Downlink(_uplink[0], KEY, folder, None)


def fresh_folder():
    folder = scratch("dl")
    os.mkdir(folder)
    return folder


def config_outcome(reply, current=0):
    """(result or DownlinkError, files left in the folder, request line)."""
    folder = fresh_folder()
    link = downlink(folder)

    async def work():
        try:
            return await link.config(current)
        except DownlinkError as exc:
            return exc

    result, seen = serve([reply], work)
    return result, sorted(os.listdir(folder)), seen[0]


def test_config_is_installed_whole():
    result, files, request = config_outcome(http(200, config_document(3)), current=2)
    version, merchants_, cashiers_, auto_block = result
    assert version == 3 and merchants_.get(1).name == "Soup" and len(cashiers_) == 1
    assert auto_block is None  # the terminal.json rule stays
    assert files == [PUSHED_CONFIG]  # renamed into place, no temporary left
    assert request.startswith(b"GET /v1/terminals/T0042/config?since=2 ")


def refused_unchanged(cases):
    for reply, reason in cases:
        result, files, _ = config_outcome(reply, current=2)
        assert isinstance(result, DownlinkError) and reason in str(result), (reason, result)
        assert files == [], (reason, files)


def test_config_not_authentic_changes_nothing():
    flipped = bytearray(config_document(3))
    flipped[40] ^= 1
    refused_unchanged(
        (
            (http(200, config_document(3, key=OTHER_KEY)), "MAC"),
            (http(200, bytes(flipped)), "MAC"),
            (http(200, bytes(flipped[:-1])), "wrong size"),  # Content-Length one byte less
            (http(200, b"OTDL" + bytes(60)), "not a config"),
            (http(200, seal_document(KEY, "B", 3, b"{}")), "not a config"),
        )
    )


def test_config_not_newer_or_not_what_it_says_changes_nothing():
    refused_unchanged(
        (
            (http(200, config_document(2)), "not newer"),
            (http(200, config_document(3, says=4)), "version 4"),
        )
    )


def test_config_not_valid_changes_nothing():
    refused_unchanged(
        (
            (http(200, config_document(3, merchants={"merchants": []})), "no merchants"),
            (http(200, seal_document(KEY, "C", 3, b"{not json")), "refused"),
        )
    )


def test_cut_short_or_no_document_is_not_a_refusal():
    document = config_document(3)
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(document) + document[:50]
    for reply in (cut, http(404, b"none")):
        result, files, _ = config_outcome(reply)
        assert isinstance(result, DownlinkError) and files == []


def test_blacklist_delta_is_merged_from_the_list_version():
    path = fresh_folder() + "/bl"  # a folder of its own: the files left are listed below
    listing = Blacklist(path)
    listing.apply(4, [b"\x00\x00\x00\x00\x00\x07"], [])
    add = [b"\x00\x00\x00\x00\x00\x05", b"\x00\x00\x00\x00\x00\x09"]
    remove = [b"\x00\x00\x00\x00\x00\x07"]
    payload = struct.pack(">III", 4, 2, 1) + b"".join(add) + b"".join(remove)
    bad = struct.pack(">III", 4, 1, 0) + add[1] + add[0]  # counts and size disagree
    link = downlink(fresh_folder())

    async def work():
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(await link.blacklist(listing))
            except DownlinkError as exc:
                outcomes.append(str(exc))
        return outcomes

    replies = [
        http(200, seal_document(OTHER_KEY, "B", 6, payload)),
        http(200, seal_document(KEY, "B", 6, bad + add[0])),
        http(200, seal_document(KEY, "B", 6, payload)),
        http(200, seal_document(KEY, "B", 6, payload)),  # the same again: not newer
    ]
    outcomes, seen = serve(replies, work)
    assert "MAC" in outcomes[0] and "do not match" in outcomes[1]
    assert outcomes[2] == (6, 2, 1) and "not newer" in outcomes[3]
    assert seen[0].startswith(b"GET /v1/terminals/T0042/blacklist?since=4 ")
    assert [listing.contains(t) for t in add + remove] == [True, True, False]
    assert sorted(os.listdir(path.rsplit("/", 1)[0])).count(path.rsplit("/", 1)[1]) == 1
    assert not exists(path + ".delta") and not exists(path + ".new")


def test_unsorted_delta_changes_nothing():
    path = scratch("bl")
    listing = Blacklist(path)
    listing.apply(1, [b"\x00\x00\x00\x00\x00\x07"], [])
    token_a, token_b = b"\x00\x00\x00\x00\x00\x09", b"\x00\x00\x00\x00\x00\x05"
    payload = struct.pack(">III", 1, 2, 0) + token_a + token_b
    link = downlink(fresh_folder())

    async def work():
        try:
            return await link.blacklist(listing)
        except DownlinkError as exc:
            return str(exc)

    outcome, _ = serve([http(200, seal_document(KEY, "B", 2, payload))], work)
    assert "refused" in outcome and "sorted" in outcome
    again = Blacklist(path)
    assert (again.version, again.count) == (1, 1) and not again.contains(token_b)
    assert not exists(path + ".new") and not exists(path + ".delta")


def test_a_delta_binds_its_base_and_a_whole_list_replaces():
    path = fresh_folder() + "/bl"
    listing = Blacklist(path)
    listing.apply(3, [b"\x00\x00\x00\x00\x00\x07"], [])
    token = b"\x00\x00\x00\x00\x00\x05"
    link = downlink(fresh_folder())

    async def work():
        outcomes = []
        for whole in (False, True, True):
            try:
                outcomes.append(await link.blacklist(listing, whole))
            except DownlinkError as exc:
                outcomes.append(str(exc))
        return outcomes

    replies = [
        # A delta from version 1 (served to a list at 3): the list at 1 lacked what 2 and 3
        # added, and taking it would lose them for good.
        http(200, seal_document(KEY, "B", 4, struct.pack(">III", 1, 1, 0) + token)),
        # The whole list, at the version the terminal has: ours was found damaged.
        http(200, seal_document(KEY, "B", 3, struct.pack(">III", 0, 1, 0) + token)),
        # A whole list older than ours (a replay): refused.
        http(200, seal_document(KEY, "B", 2, struct.pack(">III", 0, 0, 0))),
    ]
    outcomes, seen = serve(replies, work)
    assert "a delta from 1, the list is at 3" in outcomes[0]
    assert outcomes[1] == (3, 1, 0) and "not newer" in outcomes[2]
    assert b"blacklist?since=3 " in seen[0] and b"blacklist?since=0 " in seen[2]
    assert listing.contains(token) and not listing.contains(b"\x00\x00\x00\x00\x00\x07")
    assert (listing.version, listing.count) == (3, 1)


def test_commands_after_the_last_taken():
    link = downlink(fresh_folder())

    async def work():
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(await link.commands(4))
            except DownlinkError as exc:
                outcomes.append(str(exc))
        return outcomes

    good = seal_document(KEY, "K", 6, b'[[5, "settle"], [6, "faultlog"]]')
    gap = seal_document(KEY, "K", 7, b'[[5, "settle"], [4, "settle"]]')
    outcomes, seen = serve([http(200, good), http(200, gap)], work)
    assert outcomes[0] == [(5, "settle"), (6, "faultlog")]
    assert "not a list" in outcomes[1]
    assert seen[0].startswith(b"GET /v1/terminals/T0042/commands?since=4 ")


def test_downlink_key_comes_from_the_bdk_and_ik_id():
    bdk = bytes(range(16))
    key = derive_downlink_key(bdk, b"\x01" * 8)
    assert len(key) == 16 and key != derive_downlink_key(bdk, b"\x02" * 8)
    assert key == derive_downlink_key(bdk, b"\x01" * 8)
    assert merchants()["merchants"][0]["number"] == 1


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False
