"""A test plugin: reads a value of every Avro type and emits a changed copy, checking that each
arrives as the plain Python type the SDK promises (a failure names the field)."""

import datetime

from meshhost_sdk import OutputPort, Processor, RecordError

EXPECTED_TYPES = {
    "id": int, "flag": bool, "count": int, "ratio": float, "score": float, "name": str,
    "raw": bytes, "tag": bytes, "mood": str, "counts": dict, "items": list, "owner": dict,
}


class EveryType(Processor):
    def init(self, config, inputs):
        schema = dict(inputs[0].schema, name="Changed")
        schema["fields"] = inputs[0].fields() + [{"name": "note", "type": "string", "default": "none"}]
        return [OutputPort("out", schema)]

    def process_record(self, record):
        v = record.value
        for field, expected in EXPECTED_TYPES.items():
            if type(v[field]) is not expected:
                raise RecordError(f"{field} arrived as {type(v[field]).__name__}")
        if v["name"] == "bad-type":
            return dict(v, count="many")
        if v["name"] == "not-plain":
            return dict(v, name=datetime.date(2026, 12, 6))
        return {
            "id": v["id"] + 2**40,
            "flag": not v["flag"],
            "count": -v["count"],
            "ratio": v["ratio"],
            "score": v["score"] / 4,
            "name": v["name"].upper(),
            "raw": v["raw"][::-1],
            "tag": bytes(b ^ 0xFF for b in v["tag"]),
            "mood": "SAD" if v["mood"] == "HAPPY" else "HAPPY",
            "counts": {k: n * 2 for k, n in v["counts"].items()},
            "items": tuple(reversed(v["items"])),
            "choice": v["choice"],
            "owner": dict(v["owner"], since=v["owner"]["since"] or 1999),
        }
