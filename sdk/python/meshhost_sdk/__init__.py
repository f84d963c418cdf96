"""Write meshhost processors in Python.

A processor is a class::

    from meshhost_sdk import Processor, OutputPort, ConfigError

    class Upper(Processor):
        def init(self, config, inputs):
            self.field = config.get("field", "title")
            if inputs[0].field(self.field) is None:
                raise ConfigError("field", f"no field {self.field!r} in the input schema")
            return [OutputPort("out", inputs[0].schema)]

        def process_record(self, record):
            value = dict(record.value)
            value[self.field] = value[self.field].upper()
            return value

Values are parsed JSON objects (the host transcodes them from and to Avro); an exception
raised for a record sends that record to the dead-letter topic. Build the component with
``python3 sdk/python/build.py app.py -o plugin.wasm`` (see ``sdk/python/README.md``).
"""

from . import log
from .processor import (
    Batch,
    ConfigError,
    ConfigErrors,
    OutputPort,
    Port,
    Processor,
    Record,
    RecordError,
    Routed,
    to,
)
from .state import MemoryState, State

__all__ = [
    "Batch",
    "ConfigError",
    "ConfigErrors",
    "OutputPort",
    "Port",
    "Processor",
    "Record",
    "RecordError",
    "Routed",
    "MemoryState",
    "State",
    "log",
    "to",
]
