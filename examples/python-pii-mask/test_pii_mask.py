"""The pii-mask logic, natively: python3 -m unittest discover -s examples/python-pii-mask"""

import hashlib
import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent.parent / "sdk" / "python")]

from meshhost_sdk.processor import run_init  # noqa: E402
from pii_mask import PiiMask  # noqa: E402

SCHEMA = (HERE / "customer.avsc").read_text()


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Tests(unittest.TestCase):
    def test_configured_fields(self):
        p, _ = run_init(PiiMask, json.dumps({"fields": ["email", "contact", "profile.backup_email"], "salt": "s:"}), [("c", SCHEMA)])
        batch = p.run_batch(0, [
            {"id": 1, "name": "A", "email": " Ann@X.org", "contact": None, "profile": {"city": "L", "backup_email": "b@y.org"}, "notes": ["a@b.org"]},
            {"id": 2, "name": "B", "email": "b@x.org", "contact": 336, "profile": {"city": "L", "backup_email": None}, "notes": []},
        ])
        value = batch.emitted[0][2].value
        self.assertEqual((value["email"], value["contact"], value["profile"]["backup_email"], value["notes"]), (sha("s:ann@x.org"), None, sha("s:b@y.org"), ["a@b.org"]))
        self.assertEqual(batch.failures, [(1, "pii-mask: field 'contact' is not a string (got int 336); cannot hash it")])

    def test_auto_detection_hashes_addresses_at_any_depth(self):
        p, _ = run_init(PiiMask, json.dumps({"normalize": False}), [("c", SCHEMA)])
        batch = p.run_batch(0, [{"id": 1, "name": "not@an address", "email": "A@x.org", "contact": 5, "profile": {"city": "L", "backup_email": "b@y.org"}, "notes": ["x", "c@z.io"]}])
        value = batch.emitted[0][2].value
        self.assertEqual(value, {"id": 1, "name": "not@an address", "email": sha("A@x.org"), "contact": 5, "profile": {"city": "L", "backup_email": sha("b@y.org")}, "notes": ["x", sha("c@z.io")]})

    def test_config_errors_have_paths(self):
        p, errors = run_init(PiiMask, json.dumps({"fields": ["email", "id", "profile.mail", "name.x"], "salt": 3}), [("c", SCHEMA)])
        self.assertIsNone(p)
        self.assertEqual([e.path for e in errors], ["salt", "fields[1]", "fields[2]", "fields[3]"])
        self.assertEqual(errors[1].message, "field 'id' is long, not a string")


if __name__ == "__main__":
    unittest.main()
