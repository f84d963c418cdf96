"""Native tests of meshhost_sdk (no WebAssembly): python3 -m unittest discover sdk/python/tests"""

import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshhost_sdk import ConfigError, ConfigErrors, OutputPort, Processor, Record, RecordError, to  # noqa: E402
from meshhost_sdk import MemoryState  # noqa: E402
from meshhost_sdk.build import uses_state  # noqa: E402
from meshhost_sdk.processor import _batch_head, _load_values, _run_batch, run_init  # noqa: E402

SCHEMA = {"type": "record", "name": "T", "fields": [{"name": "n", "type": "long"}, {"name": "s", "type": "string"}]}
INPUT = [("src", json.dumps(SCHEMA))]


def make(cls, config="{}"):
    processor, result = run_init(cls, config, INPUT)
    assert processor is not None, result
    return processor


class Identity(Processor):
    pass


class Router(Processor):
    def init(self, config, inputs):
        self.limit = config.get("limit", 10)
        return [OutputPort("small", inputs[0].schema), OutputPort("big", inputs[0].schema_text)]

    def process_record(self, record):
        n = record.value["n"]
        if n < 0:
            raise RecordError(f"negative n: {n}")
        if n == 0:
            return None
        if n == 99:
            return [to("small", record.value), to("big", record.value)]
        if n == 13:
            return {"n": n, "s": b"\xff"}  # bytes stay bytes
        if n == 7:
            return 1 / 0
        return to("small" if n < self.limit else "big", record.value)


class BatchWise(Processor):
    """Overrides process; raises for the whole batch when a record has n == 5."""

    def process(self, input, records):
        for i, record in enumerate(records):
            if record.value["n"] == 5:
                raise ValueError("five is poison")
            self.emit(0, i, record.value)


class TimesTen(Processor):
    """Overrides process; emits plain values, which take their origin's key and headers."""

    def process(self, input, records):
        for record in records:
            self.emit(0, record.index, {"n": record.value["n"] * 10, "s": record.value["s"]})


class Tests(unittest.TestCase):
    def test_a_batch_of_values_is_loaded_at_once_with_shared_names(self):
        # As the host writes {"n": 1, "s": "x"}: field names are references to the port's names.
        one = b"{r\x00\x00\x00\x00i\x01\x00\x00\x00r\x01\x00\x00\x00z\x01x0"
        two = b"{r\x00\x00\x00\x00i\x02\x00\x00\x00r\x01\x00\x00\x00s\x01\x00\x00\x00\xff0"
        values = _load_values(_batch_head(["n", "s"]), [one, None, two])
        self.assertEqual(values, [{"n": 1, "s": "x"}, None, {"n": 2, "s": b"\xff"}])
        self.assertIs(next(iter(values[0])), next(iter(values[2])), "one str per field name")
        self.assertEqual(_load_values(_batch_head(["é" * 200]), [b"{r\x00\x00\x00\x00N0"]), [{"é" * 200: None}])

    def test_memory_state_has_the_host_semantics(self):
        state = MemoryState()
        state.put("b/1", b"x")
        state.put(b"a/2", "y")
        state.put("b/0", "z")
        state.put("c", "w")
        self.assertEqual(state.get("b/1"), b"x")
        self.assertIsNone(state.get("nope"))
        self.assertEqual(state.scan_prefix("b/"), [(b"b/0", b"z"), (b"b/1", b"x")])
        state.delete("b/0")
        state.delete("absent")
        self.assertEqual(state.scan_prefix(b""), [(b"a/2", b"y"), (b"b/1", b"x"), (b"c", b"w")])
        with self.assertRaises(TypeError):
            state.put("k", 3)

    def test_processors_get_a_fresh_state_natively(self):
        class Count(Processor):
            def process_record(self, record):
                n = int(self.state.get("n") or 0) + 1
                self.state.put("n", str(n))
                return {"n": n, "s": record.value["s"]}

        p = make(Count)
        self.assertEqual([r.value["n"] for _, _, r in p.run_batch(0, [{"n": 0, "s": "a"}] * 3).emitted], [1, 2, 3])
        self.assertEqual(make(Count).state.get("n"), None)

    def test_the_build_picks_the_stateful_world_only_for_code_using_state(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            stateless, stateful = Path(d, "a.py"), Path(d, "b.py")
            stateless.write_text("class A:\n    def f(self, record):\n        return record.value['state']\n")
            stateful.write_text("class B:\n    def f(self):\n        return self.state.get('k')\n")
            self.assertFalse(uses_state([stateless]))
            self.assertTrue(uses_state([stateless, stateful]))

    def test_batch_emits_find_their_origin_by_index_not_position(self):
        # The host's record 1 had a value that was not JSON, so it never reached `process`.
        records = [Record({"n": 1, "s": "a"}, key=b"k0", index=0), Record({"n": 2, "s": "b"}, key=b"k2", headers=[("h", b"v")], index=2)]
        emitted, failures = _run_batch(make(TimesTen), 0, records)
        self.assertEqual(failures, [])
        self.assertEqual([(origin, key, list(headers)) for _, origin, key, _, headers, _ in emitted], [(0, b"k0", []), (2, b"k2", [("h", b"v")])])


    def test_default_init_and_identity(self):
        p = make(Identity)
        batch = p.run_batch(0, [Record({"n": 1, "s": "é"}, key=b"k", headers=[("h", b"v")], timestamp=5), Record(None, key=b"gone")])
        self.assertEqual([(port, origin) for port, origin, _ in batch.emitted], [("out", 0), ("out", 1)])
        first = batch.emitted[0][2]
        self.assertEqual((first.value, first.key, first.headers, first.timestamp), ({"n": 1, "s": "é"}, b"k", [("h", b"v")], 5))
        self.assertEqual((batch.emitted[1][2].value, batch.emitted[1][2].key), (None, b"gone"))
        self.assertEqual(batch.failures, [])

    def test_init_declares_ports_as_json_text(self):
        processor, ports = run_init(Router, '{"limit": 3}', INPUT)
        self.assertEqual([name for name, _ in ports], ["small", "big"])
        self.assertEqual(json.loads(ports[0][1]), SCHEMA)
        self.assertEqual(ports[1][1], json.dumps(SCHEMA))
        self.assertEqual(processor.limit, 3)

    def test_routing_failures_and_drops(self):
        p = make(Router)
        batch = p.run_batch(0, [{"n": 1, "s": ""}, {"n": 20, "s": ""}, {"n": -1, "s": ""}, {"n": 0, "s": ""}, {"n": 99, "s": ""}, {"n": 7, "s": ""}, {"n": 13, "s": ""}])
        self.assertEqual([(port, origin) for port, origin, _ in batch.emitted], [("small", 0), ("big", 1), ("small", 4), ("big", 4), ("small", 6)])
        self.assertEqual(batch.emitted[-1][2].value, {"n": 13, "s": b"\xff"})
        self.assertEqual(batch.failures, [(2, "negative n: -1"), (5, "ZeroDivisionError: division by zero")])

    def test_a_failed_record_emits_nothing(self):
        class Half(Processor):
            def process_record(self, record):
                self.emit(0, record.index, record.value)
                raise RecordError("after emitting")

        batch = make(Half).run_batch(0, [{"n": 1, "s": ""}])
        self.assertEqual((batch.emitted, batch.failures), ([], [(0, "after emitting")]))

    def test_unserializable_values_fail_the_record(self):
        class Bad(Processor):
            def process_record(self, record):
                return {"n": object()}

        batch = make(Bad).run_batch(0, [{"n": 1, "s": ""}])
        self.assertEqual(batch.emitted, [])
        self.assertIn("not plain data", batch.failures[0][1])

    def test_unknown_port_fails_the_record(self):
        class Lost(Processor):
            def process_record(self, record):
                return to("nowhere", record.value)

        batch = make(Lost).run_batch(0, [{"n": 1, "s": ""}])
        self.assertEqual(batch.failures, [(0, "no output port named 'nowhere' (declared: out)")])

    def test_a_batch_that_raises_is_retried_record_by_record(self):
        batch = make(BatchWise).run_batch(0, [{"n": 1, "s": ""}, {"n": 5, "s": ""}, {"n": 6, "s": ""}])
        self.assertEqual([(port, origin, r.value["n"]) for port, origin, r in batch.emitted], [("out", 0, 1), ("out", 2, 6)])
        self.assertEqual(batch.failures, [(1, "ValueError: five is poison")])

    def test_tombstone_policies(self):
        class Drop(Processor):
            TOMBSTONES = "drop"

        class Seen(Processor):
            TOMBSTONES = "process"

            def process_record(self, record):
                return {"n": 0, "s": "was a tombstone"} if record.value is None else None

        self.assertEqual(make(Drop).run_batch(0, [None]).emitted, [])
        self.assertEqual(make(Seen).run_batch(0, [None]).emitted[0][2].value, {"n": 0, "s": "was a tombstone"})

    def test_config_errors(self):
        class Picky(Processor):
            def init(self, config, inputs):
                if "a" in config:
                    raise ConfigError("a", "not allowed")
                if "b" in config:
                    raise ConfigErrors([ConfigError("b", "one"), ConfigError("", "two")])
                if "c" in config:
                    raise KeyError("c")
                return []

        def errors(config):
            processor, result = run_init(Picky, config, INPUT)
            self.assertIsNone(processor)
            return [(e.path, e.message) for e in result]

        self.assertEqual(errors('{"a": 1}'), [("a", "not allowed")])
        self.assertEqual(errors('{"b": 1}'), [("b", "one"), ("", "two")])
        self.assertEqual(errors('{"c": 1}'), [("", "init failed: KeyError: 'c'")])
        self.assertEqual(errors("{}"), [("", "the processor declared no output port")])
        self.assertTrue(errors("{nope")[0][1].startswith("configuration is not JSON"))


if __name__ == "__main__":
    unittest.main()
