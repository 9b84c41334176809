"""The back office in a real browser (Debian's Chromium driven by Playwright) over a
simulated day on three terminals: the operator and each merchant log in and see the
report's figures, a merchant asking for another's page gets 404, a statement PDF is
downloaded and read back with pdftotext, the pain.001 is checked against its schema, and
screenshots are saved. tools/test installs chromium and poppler-utils when they are missing."""

import os
import re

import sepaxml
import xmlschema

from tools.host import officeshots


def test_operator_and_merchants_in_a_real_browser(tmp_path):
    checks = []

    def check(condition, what):
        checks.append((bool(condition), what))

    out = str(tmp_path / "shots")
    saved, report = officeshots.run(out, str(tmp_path / "state"), check)
    failed = [what for ok, what in checks if not ok]
    assert not failed, failed
    assert len(checks) >= 20
    # Three simulated terminals (tools/sim, the real firmware) drained into one back end.
    # Noodles sold on two: the first's (2.50 + 12.00, its Z, then 7.70) and the second's
    # (18.90 + 7.60); tea on the first (12.34 + 5.00) and the third (3.20 + 6.40);
    # dumplings on the first (0.99 voided, 4.50) and the second (33.50 + 12.75).
    assert report["800000000000001"]["net_total_minor"] == 250 + 1200 + 770 + 1890 + 760
    assert report["800000000000002"]["net_total_minor"] == 1234 + 500 + 320 + 640
    assert report["800000000000003"]["net_total_minor"] == 450 + 3350 + 1275
    assert report["800000000000003"]["voids_count"] == 1
    for merchant_id, figures in report.items():
        text = officeshots.pdf_text(saved["statement-" + merchant_id])
        assert "Statement: %s" % figures["name"] in text
        net = officeshots.euros(figures["net_total_minor"])
        assert re.search(r"Net\s+%s" % re.escape(net), text), text
        payout = officeshots.euros(officeshots.payout_of(merchant_id, figures))
        assert re.search(r"Payout\s+%s" % re.escape(payout), text)
    noodles = officeshots.pdf_text(saved["statement-800000000000001"])
    assert "Z 1: receipts 1 to 2" in noodles and "reconciles" in noodles
    schema = os.path.join(os.path.dirname(sepaxml.__file__), "schemas", "pain.001.001.03.xsd")
    with open(saved["pain001"], "rb") as source:
        xml = source.read()
    xmlschema.XMLSchema(schema).validate(xml)
    total = sum(officeshots.payout_of(m, figures) for m, figures in report.items())
    assert "<CtrlSum>%d.%02d</CtrlSum>" % divmod(total, 100) in xml.decode()
    for name in ("operator-fleet", "operator-merchants", "statement-picture"):
        with open(saved[name], "rb") as source:
            assert source.read(8) == b"\x89PNG\r\n\x1a\n"
