"""Native tests of click-counter (no component, no broker): python3 -m unittest test_app"""

import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "sdk" / "python"))
sys.path.insert(0, str(HERE))

from app import ClickCounter  # noqa: E402
from meshhost_sdk import Record  # noqa: E402
from meshhost_sdk.processor import run_init  # noqa: E402

SCHEMA = (HERE / "click.avsc").read_text()


class ClickCounterTest(unittest.TestCase):
    def counter(self):
        processor, outputs = run_init(ClickCounter, "{}", [("clicks", SCHEMA)])
        self.assertIsNotNone(processor, outputs)
        return processor

    def test_counts_distinct_clicks_per_user_and_ignores_replays(self):
        counter = self.counter()
        clicks = [("c1", "ann"), ("c2", "bob"), ("c3", "ann"), ("c1", "ann")]
        batch = counter.run_batch(0, [Record({"id": i, "user": u}, key=u.encode()) for i, u in clicks])
        self.assertEqual([r.value for _, _, r in batch.emitted], [
            {"user": "ann", "clicks": 1}, {"user": "bob", "clicks": 1}, {"user": "ann", "clicks": 2}, {"user": "ann", "clicks": 2},
        ])
        self.assertEqual(counter.state.scan_prefix("count/"), [(b"count/ann", b"2"), (b"count/bob", b"1")])

    def test_bad_config(self):
        processor, errors = run_init(ClickCounter, json.dumps({"x": 1}), [("clicks", SCHEMA)])
        self.assertIsNone(processor)
        self.assertEqual(errors[0].path, "x")


if __name__ == "__main__":
    unittest.main()
