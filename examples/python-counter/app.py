"""click-counter: a running count of distinct clicks per user, kept in durable state.

Each input record is a click ``{"id": ..., "user": ...}``. The output is ``{"user", "clicks"}``:
the user's count so far, so the output topic read as a changelog (last value per user) holds
every user's total.

Why it counts distinct click ids rather than records: meshhost delivers at least once, so after
a crash the records since the last commit are processed again. Remembering the ids already
counted (``seen/<id>``) makes a replay change nothing, and a replayed click re-emits the
current count (so the last output per user is always the total).
"""

from meshhost_sdk import ConfigError, OutputPort, Processor, RecordError

COUNT = {
    "type": "record",
    "name": "UserClicks",
    "namespace": "examples",
    "fields": [{"name": "user", "type": "string"}, {"name": "clicks", "type": "long"}],
}


class ClickCounter(Processor):
    def init(self, config, inputs):
        if config:
            raise ConfigError(next(iter(config)), "unknown option; click-counter takes none")
        for name in ("id", "user"):
            if inputs[0].field(name) is None:
                raise ConfigError("", f"the input {inputs[0].name!r} has no field {name!r}")
        return [OutputPort("out", COUNT)]

    def process_record(self, record):
        click, user = record.value["id"], record.value["user"]
        if not isinstance(user, str):
            raise RecordError("field 'user' is not a string")
        count_key = f"count/{user}"
        clicks = int(self.state.get(count_key) or b"0")
        if self.state.get(f"seen/{click}") is None:
            clicks += 1
            self.state.put(f"seen/{click}", b"")
            self.state.put(count_key, str(clicks))
        return {"user": user, "clicks": clicks}
